"""Layer-wise allocation: split a total sparsity into per-layer keep counts.

Every allocation answers ``keep_counts(ctx) -> {layer: kept weights}``; the engine then keeps the
top-scoring weights of each layer. Shared rules, applied to every allocation:

- the total kept is exactly ``round((1 - s) * N)`` (largest-remainder rounding), so the achieved
  sparsity is within one weight of the target;
- ``keep_first_dense`` / ``keep_last_dense`` layers keep all their (still kept) weights;
- ``min_density``: every layer keeps at least ``ceil(min_density * n)`` weights;
- nesting: no layer keeps more than it keeps now.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..base.errors import ConfigError
from ..base.registry import Registry
from .owl import group_of, input_norms, outlier_ratio, owl_densities, owl_metric
from .select import ranked, top_mask

if TYPE_CHECKING:  # a type only: config validates names through registries, which import this
    from ..config import AllocationConfig

log = logging.getLogger(__name__)


@dataclass
class AllocationContext:
    """What an allocation may look at for one pruning step."""

    shapes: dict[str, tuple[int, ...]]
    kept: dict[str, int]  # weights each layer keeps now (nesting cap)
    sparsity: float  # total sparsity to reach after this step
    final_sparsity: float  # the run's final target (explicit vectors scale by step / final)
    options: AllocationConfig
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    #: the model and the calibration batches (``prune.score_batches``), for allocations that
    #: read activations (OWL)
    model: nn.Module | None = None
    params: dict[str, torch.Tensor] = field(default_factory=dict)
    batches: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    #: layers left out of this step (all-zero weights): they keep what they keep, like the
    #: ``keep_first_dense`` layer, and the others share the rest of the budget
    held: frozenset[str] = frozenset()

    @property
    def sizes(self) -> dict[str, int]:
        return {n: math.prod(s) for n, s in self.shapes.items()}

    def total_keep(self) -> int:
        return round((1.0 - self.sparsity) * sum(self.sizes.values()))

    def dense_layers(self) -> set[str]:
        names = list(self.shapes)
        out = set()
        if self.options.keep_first_dense:
            out.add(names[0])
        if self.options.keep_last_dense:
            out.add(names[-1])
        return out | self.held

    def floors(self) -> dict[str, int]:
        sizes = self.sizes
        return {n: min(self.kept[n], math.ceil(self.options.min_density * sizes[n]))
                for n in sizes}


class Allocation:
    """Base: subclasses give per-layer proportional weights; the base solves the budget."""

    #: ranks squared scores, so a criterion with signed scores (GraSP) would be misread
    needs_unsigned_scores: bool = False
    #: the keep counts depend on the scores only through their order (or not at all): masks
    #: chosen from scores off by at most d per weight are the same wherever every kept score
    #: beats every dropped one by 2d (``Pruner``'s check of batched scores, packing)
    order_only: bool = False

    def target_sparsity(self, shapes: dict[str, tuple[int, ...]], options: AllocationConfig,
                        requested: float) -> float:
        """The total sparsity this allocation reaches (explicit vectors define their own)."""
        return requested

    def weights(self, ctx: AllocationContext) -> dict[str, float]:
        raise NotImplementedError

    @staticmethod
    def budget(ctx: AllocationContext) -> tuple[set[str], list[str], int]:
        """(dense layers, the others, weights the others may keep); an infeasible target is a
        ``ConfigError``."""
        dense = ctx.dense_layers()
        budget = ctx.total_keep() - sum(ctx.kept[n] for n in dense)
        free = [n for n in ctx.shapes if n not in dense]
        floors = ctx.floors()
        if budget < sum(floors[n] for n in free):
            raise ConfigError(
                f"prune.sparsity: {ctx.sparsity:.4f} leaves {ctx.total_keep()} weights, fewer than "
                "the dense first/last layers and prune.allocation.min_density require; lower the "
                "sparsity or relax those options"
            )
        return dense, free, budget

    def keep_counts(self, ctx: AllocationContext) -> dict[str, int]:
        dense, free, budget = self.budget(ctx)
        floors, caps = ctx.floors(), ctx.kept
        w = self.weights(ctx)
        counts = water_fill({n: w[n] for n in free}, {n: floors[n] for n in free},
                            {n: caps[n] for n in free}, budget)
        return {**{n: ctx.kept[n] for n in dense}, **counts}


def water_fill(weights: dict[str, float], floors: dict[str, int], caps: dict[str, int],
               total: int) -> dict[str, int]:
    """Integer counts ~ eps * weight summing to ``total`` within [floor, cap] per layer.

    Layers whose share would exceed their cap (or fall below their floor) are fixed there and eps
    is solved again for the rest -- RigL's ERK "dense overflow" rule, generalised.
    """
    total = max(0, min(total, sum(caps.values())))
    fixed: dict[str, float] = {}
    while True:
        free = [n for n in weights if n not in fixed]
        rest = total - sum(fixed.values())
        wsum = sum(weights[n] for n in free)
        eps = rest / wsum if wsum > 0 else 0.0
        changed = False
        for n in free:
            x = eps * weights[n]
            if x > caps[n]:
                fixed[n] = caps[n]
                changed = True
            elif x < floors[n]:
                fixed[n] = floors[n]
                changed = True
        if not changed:
            break
    real = {n: fixed.get(n, eps * weights[n]) for n in weights}
    return largest_remainder(real, caps, total)


def largest_remainder(real: dict[str, float], caps: dict[str, int], total: int) -> dict[str, int]:
    """Round ``real`` to integers summing to ``total`` (Hamilton's method), respecting caps."""
    counts = {n: min(caps[n], math.floor(x + 1e-9)) for n, x in real.items()}
    left = total - sum(counts.values())
    by_remainder = sorted(real, key=lambda n: (-(real[n] - math.floor(real[n] + 1e-9)), n))
    while left > 0:
        progressed = False
        for n in by_remainder:
            if left == 0:
                break
            if counts[n] < caps[n]:
                counts[n] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return counts


ALLOCATIONS: Registry[type[Allocation]] = Registry("allocation")


@ALLOCATIONS.register("uniform")
class Uniform(Allocation):
    """The same sparsity in every (non-dense) layer."""

    order_only = True

    def weights(self, ctx: AllocationContext) -> dict[str, float]:
        return {n: float(v) for n, v in ctx.sizes.items()}



@ALLOCATIONS.register("erk")
class ERK(Allocation):
    """RigL's Erdős–Rényi-Kernel: density of a layer ∝ (Σ dims / Π dims)^power."""

    order_only = True

    def weights(self, ctx: AllocationContext) -> dict[str, float]:
        p = ctx.options.erk_power
        return {n: math.prod(s) * (sum(s) / math.prod(s)) ** p for n, s in ctx.shapes.items()}


@ALLOCATIONS.register("global")
class Global(Allocation):
    """One threshold over all layers' scores (can collapse layers)."""

    order_only = True

    def keep_counts(self, ctx: AllocationContext) -> dict[str, int]:
        dense, names, budget = self.budget(ctx)
        floors = ctx.floors()
        flats = []
        for n in names:
            flat = ranked(self.transform(ctx.scores[n], ctx.masks[n]), ctx.masks[n])
            if floors[n] > 0:  # a layer's best `floor` weights are kept whatever the threshold
                flat = flat.masked_fill(top_mask(flat, floors[n]), float("inf"))
            flats.append(flat)
        allflat = torch.cat(flats)
        budget = max(0, min(budget, sum(ctx.kept[n] for n in names)))
        chosen = top_mask(allflat, budget)
        per_layer = torch.stack([part.sum() for part in chosen.split([f.numel() for f in flats])])
        counts = {n: ctx.kept[n] for n in dense}
        counts.update(zip(names, (int(c) for c in per_layer.tolist()), strict=True))
        return counts


    def transform(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-layer rescoring before the global ranking (identity here)."""
        return scores


@ALLOCATIONS.register("lamp")
class LAMP(Global):
    """LAMP (Lee et al. 2021): score² over the sum of squares of the layer's scores at least as
    large, then one global threshold. Each layer's best weight scores 1, the maximum, so no layer
    collapses.

    LAMP is defined on magnitudes (Torch-Pruning's ``LAMPImportance`` is a
    ``MagnitudeImportance``); squaring a signed score would rank GraSP's most harmful weight
    first, so signed criteria are refused (``needs_unsigned_scores``). Scores are divided by the
    layer's largest before squaring (LAMP is scale-free per layer), so float64 SynFlow scores near
    the dtype's range do not overflow.
    """

    needs_unsigned_scores = True
    order_only = False  # a per-layer rescaling: not order-preserving across layers

    def transform(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = scores.detach()
        s = (s if s.dtype == torch.float64 else s.float()).flatten() * mask.flatten()
        if bool((s < 0).any()):
            raise ConfigError(
                "prune.allocation: lamp needs non-negative scores (it squares them); this "
                "criterion returned negative ones; use allocation global or another criterion"
            )
        sq = (s / s.max().clamp_min(torch.finfo(s.dtype).tiny)) ** 2
        order = torch.argsort(sq, stable=True)  # ascending
        sorted_sq = sq[order]
        suffix = sorted_sq.flip(0).cumsum(0).flip(0)  # Σ_{j ≥ i} w_j²
        out = torch.empty_like(sq)
        out[order] = sorted_sq / suffix.clamp_min(torch.finfo(sq.dtype).tiny)
        return out.view_as(scores)


@ALLOCATIONS.register("explicit")
class Explicit(Allocation):
    """A given per-layer sparsity vector (by layer name or by position): what optimisers search.

    The run's target is the vector's weighted mean; intermediate schedule steps scale every
    layer by ``step sparsity / final sparsity`` so masks still nest.
    """

    order_only = True

    @staticmethod
    def vector(shapes: dict[str, tuple[int, ...]], options: AllocationConfig) -> dict[str, float]:
        given = options.layer_sparsity
        names = list(shapes)
        if given is None:
            raise ConfigError(
                "prune.allocation.layer_sparsity: required by allocation 'explicit' "
                f"(a list of {len(names)} sparsities or a mapping layer name -> sparsity)"
            )
        if isinstance(given, list):
            if len(given) != len(names):
                raise ConfigError(
                    f"prune.allocation.layer_sparsity: {len(given)} values for {len(names)} "
                    f"prunable layers ({', '.join(names)})"
                )
            return dict(zip(names, given, strict=True))
        unknown = sorted(set(given) - set(names))
        missing = sorted(set(names) - set(given))
        if unknown or missing:
            raise ConfigError(
                "prune.allocation.layer_sparsity: "
                + (f"unknown layers {unknown}; " if unknown else "")
                + (f"missing layers {missing}; " if missing else "")
                + f"prunable layers are {names}"
            )
        return {n: float(given[n]) for n in names}

    def target_sparsity(self, shapes: dict[str, tuple[int, ...]], options: AllocationConfig,
                        requested: float) -> float:
        vec = self.vector(shapes, options)
        sizes = {n: math.prod(s) for n, s in shapes.items()}
        return sum(vec[n] * sizes[n] for n in sizes) / sum(sizes.values())

    def keep_counts(self, ctx: AllocationContext) -> dict[str, int]:
        vec = self.vector(ctx.shapes, ctx.options)
        scale = ctx.sparsity / ctx.final_sparsity if ctx.final_sparsity > 0 else 0.0
        floors, dense = ctx.floors(), ctx.dense_layers()
        return {
            n: ctx.kept[n] if n in dense
            else max(floors[n], min(ctx.kept[n], round(size * (1.0 - vec[n] * scale))))
            for n, size in ctx.sizes.items()
        }


@ALLOCATIONS.register("owl")
class OWL(Allocation):
    """OWL (Yin et al. 2024, luuyin/OWL ``lib/prune_all.py``): each block's density is
    1 - s plus its centred share of Wanda outliers (|W| · ‖X‖ > M · mean) rescaled to a 2λ
    spread, never below half of 1 - s; see ``owl.py``. The activations come from the
    ``prune.score_batches`` calibration batches. Densities weight the shared water-filling,
    so the total is exact, nesting caps hold, and every layer keeps at least one weight
    (per-layer sparsity in [0, 1))."""

    def weights(self, ctx: AllocationContext) -> dict[str, float]:
        if ctx.model is None or not ctx.batches:
            raise ConfigError("prune.allocation: owl needs calibration batches (activations); "
                              "set prune.score_batches >= 1 (and a training split)")
        params = {n: ctx.params[n] for n in ctx.shapes}
        norms = input_norms(ctx.model, params, ctx.batches)
        if missing := [n for n in params if n not in norms]:
            log.warning("owl: no input activations captured for %s; their outlier ratio uses "
                        "|W| alone", ", ".join(missing))
        by_group = ctx.options.owl_group == "block"
        groups: dict[str, list[str]] = {}
        for n in params:
            groups.setdefault(group_of(n) if by_group else n, []).append(n)
        ratios = {g: outlier_ratio(torch.cat([owl_metric(params[n], ctx.masks[n], norms.get(n))
                                              for n in names]), ctx.options.owl_m)
                  for g, names in groups.items()}
        sizes = ctx.sizes
        dens = owl_densities(ratios, {g: sum(sizes[n] for n in names)
                                      for g, names in groups.items()},
                             ctx.sparsity, ctx.options.owl_lambda)
        self.densities = {n: dens[g] for g, names in groups.items() for n in names}
        return {n: max(0.0, min(1.0, self.densities[n])) * sizes[n] for n in params}

    def keep_counts(self, ctx: AllocationContext) -> dict[str, int]:
        dense, free, budget = self.budget(ctx)
        caps = ctx.kept
        floors = ctx.floors()
        at_least_one = {n: max(f, min(1, caps[n])) for n, f in floors.items()}
        if budget >= sum(at_least_one[n] for n in free):  # else fewer weights than layers
            floors = at_least_one
        w = self.weights(ctx)
        counts = water_fill({n: w[n] for n in free}, {n: floors[n] for n in free},
                            {n: caps[n] for n in free}, budget)
        return {**{n: ctx.kept[n] for n in dense}, **counts}


def reached_sparsity(options: AllocationConfig, shapes: dict[str, tuple[int, ...]],
                     requested: float) -> float:
    """The total sparsity the allocation ``options`` reaches over ``shapes`` when ``requested``
    is asked (an explicit per-layer vector defines its own): the one place a trial, a tuned
    schedule and a sweep's scheduler clock read it from."""
    return float(ALLOCATIONS.get(options.name)().target_sparsity(shapes, options, requested))


def check_signed(allocation: str, criterion: str, signed: bool) -> None:
    """An allocation that squares scores refuses a criterion with signed scores (GraSP)."""
    if ALLOCATIONS.get(allocation).needs_unsigned_scores and signed:
        raise ConfigError(
            f"prune.allocation: {allocation} squares scores and needs a criterion "
            f"with non-negative scores; {criterion} scores are signed; use allocation "
            "global, uniform or erk"
        )
