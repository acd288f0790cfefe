"""One pruning step: score -> allocate -> select -> apply.

``Pruner.step(sparsity)`` is all the timings (before / during / after training, IMP) call; it
neither knows nor cares which criterion, schedule or allocation is in play.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..base.errors import ConfigError
from ..base.registry import Registry
from ..config import AllocationConfig
from .allocation import ALLOCATIONS, AllocationContext, check_signed
from .compare import COMPARISONS, Pattern, check_pattern
from .criteria import CRITERIA
from .criteria.base import Batch, LossFn, ScoreContext
from .masks import MaskSet

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class PruneStep:
    """What every granularity's prune step shares (weights: :class:`Pruner`; channels:
    ``pruning_core.structured.pruner.ChannelPruner``). The timings call only ``step``; the
    trial reads the rest through the hooks below, never through the concrete class."""

    model: nn.Module
    masks: MaskSet
    criterion: str
    batches: list[Batch]
    input_shape: tuple[int, ...]
    loss_fn: LossFn = nn.functional.cross_entropy
    criterion_options: dict = field(default_factory=dict)
    seed: int = 0
    elapsed_s: float = 0.0
    #: where ``criterion`` is looked up (a granularity has its own criteria)
    registry: ClassVar[Registry[Any]] = CRITERIA
    #: the network can be shrunk to what this step keeps (``prune.compact``)
    compacts: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self._criterion = self.registry.get(self.criterion)
        self._options = self._criterion.options.model_validate(self.criterion_options)
        self.generator = torch.Generator().manual_seed(self.seed)

    def step(self, sparsity: float) -> None:
        raise NotImplementedError

    def structure_state(self) -> dict[str, Any]:
        """What a checkpoint needs beyond the masks to restore this step's selection."""
        return {}

    def restore_structure(self, state: dict[str, Any]) -> bool:
        """Restore ``structure_state``'s selection (and the masks); ``False``: nothing to do."""
        return False

    def size_metrics(self) -> dict[str, float]:
        """The granularity's own size figures (channels: node sparsity)."""
        return {}


@dataclass(kw_only=True)
class Pruner(PruneStep):
    """The weight granularity: score -> allocate -> select -> apply."""

    allocation: AllocationConfig
    final_sparsity: float
    #: comparison group (``compare.py``); None: the criterion's own default (Wanda: row)
    compare: str | None = None
    #: N:M semi-structured sparsity, (n kept, m group size): selection is then ``nm``
    pattern: Pattern | None = None
    #: leave out of pruning a layer whose kept weights are all zero when it is scored
    #: (``prune.prune_zero_layers: false``, the default; see ``zero_layers``)
    exclude_zero_layers: bool = True
    #: the layers left out so far because their weights were all zero, in the order found
    excluded: list[str] = field(default_factory=list)
    #: scores handed in by a batched scoring pass (``pruning_core.packing.scoring``) for the
    #: next ``step``, and how far they may lie from the solo ones, ``(rel, abs)``: weight i's
    #: score within ``rel * |s_i| + abs * max |s|`` of its layer's; ``(0, 0)`` when they are
    #: bitwise the solo ones (magnitude, or the member's own)
    given: tuple[dict[str, torch.Tensor], tuple[float, float]] | None = None
    #: steps that chose their masks from given scores / that scored alone after all, because
    #: the given scores lay too close to the selection boundary to be sure of the masks
    given_used: int = 0
    given_rescored: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self._allocation = ALLOCATIONS.get(self.allocation.name)()
        check_signed(self.allocation.name, self.criterion, self._criterion.signed)
        if self._criterion.compare is None and self.compare is not None:
            raise ConfigError(f"prune.compare: {self.criterion} chooses its own masks (per "
                              "column block); remove prune.compare")
        group = "nm" if self.pattern is not None else \
            self.compare or self._criterion.compare or "layer"
        self._select = COMPARISONS.get(group)
        if self.pattern is not None:
            check_pattern({n: tuple(p.shape) for n, p in self.masks.params.items()},
                          self.pattern)

    def select(self, name: str, scores: torch.Tensor, keep: int) -> torch.Tensor:
        """The keep mask of layer ``name`` from its scores, in the comparison group."""
        return self._select(scores, self.masks[name], keep, self.pattern)

    def scores(self) -> dict[str, torch.Tensor]:
        return self._criterion(self._context())

    def _context(self) -> ScoreContext:
        return ScoreContext(
            model=self.model, params=self.masks.params, masks=self.masks.masks,
            batches=self.batches if self._criterion.needs_data else [],
            input_shape=self.input_shape, loss_fn=self.loss_fn,
            generator=self.generator, options=self._options,
        )

    def step(self, sparsity: float) -> None:
        """Prune to ``sparsity`` (fraction of prunable weights removed), nesting on the masks."""
        start = time.perf_counter()
        held = self._held()
        given, self.given = self.given, None
        scores = given[0] if given is not None else self.scores()
        keep, new = self._choose(sparsity, scores, held)
        if given is not None and max(given[1]) > 0:
            if self._margin_holds(sparsity, scores, held, keep, new, given[1]):
                self.given_used += 1
            else:  # too close to call from the batched scores: the solo scores decide
                self.given_rescored += 1
                scores = self.scores()
                keep, new = self._choose(sparsity, scores, held)
        elif given is not None:
            self.given_used += 1
        self.masks.update(new)
        self.masks.apply()
        self.elapsed_s += time.perf_counter() - start
        log.info("pruned with %s to sparsity %.4f (target %.4f)", self.criterion,
                 self.masks.sparsity(), sparsity)

    def _choose(self, sparsity: float, scores: dict[str, torch.Tensor], held: frozenset[str]
                ) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
        """(keep counts, new masks) from ``scores``: allocation, then selection."""
        ctx = AllocationContext(
            shapes={n: tuple(p.shape) for n, p in self.masks.params.items()},
            kept=self.masks.kept_per_layer(), sparsity=sparsity,
            final_sparsity=self.final_sparsity, options=self.allocation,
            scores=scores, masks=self.masks.masks,
            model=self.model, params=self.masks.params, batches=self.batches, held=held,
        )
        keep = self._allocation.keep_counts(ctx)
        rewrite = self._criterion.rewrite
        if rewrite is not None:  # SparseGPT/Wanda: sequential masks (and weight updates)
            with torch.no_grad():
                return keep, rewrite(self._context(), keep, self.select, self.pattern)
        return keep, {n: self.select(n, scores[n], keep[n]) for n in keep}

    def accepts_given_scores(self) -> bool:
        """Whether a batched pass's scores can choose this step's masks: a criterion that
        rewrites weights (SparseGPT, Wanda) chooses its own masks, and an allocation that reads
        scores beyond their order (LAMP, OWL) would not be checked by ``_margin_holds``."""
        return self._criterion.rewrite is None and self._allocation.order_only

    def would_take(self, sparsity: float, scores: dict[str, torch.Tensor],
                   tol: tuple[float, float]) -> bool:
        """Whether a step to ``sparsity`` given ``scores`` (within ``tol`` of its own) would
        choose its masks from them (``_margin_holds``); changes nothing."""
        held = frozenset(self._zero_layers())
        keep, new = self._choose(sparsity, scores, held)
        return self._margin_holds(sparsity, scores, held, keep, new, tol)

    def _margin_holds(self, sparsity: float, scores: dict[str, torch.Tensor],
                      held: frozenset[str], keep: dict[str, int],
                      new: dict[str, torch.Tensor], tol: tuple[float, float]) -> bool:
        """Whether the masks chosen from ``scores`` are the masks any scores within ``d`` of
        them choose, ``d_i = rel * |s_i| + abs * max |s|`` in each layer (``tol``): every
        kept score is lowered by its ``d``, every dropped one raised by its ``d``, and the
        masks are chosen again. For an order-only allocation and a top-k selection (every
        comparison group), the same masks mean every kept score beats every dropped one it is
        compared with by at least the sum of their two ``d``, so no error that small can swap
        them."""
        if not self.accepts_given_scores():
            return False
        shifted = {}
        for n, s in scores.items():
            if not bool(torch.isfinite(s).all()):
                return False
            if n in new:
                d = tol[0] * s.abs() + tol[1] * s.abs().max()
                s = torch.where(new[n].to(s.device), s - d, s + d)
            shifted[n] = s
        keep2, new2 = self._choose(sparsity, shifted, held)
        return keep2 == keep and all(torch.equal(new2[n], new[n]) for n in new)

    def _zero_layers(self) -> list[str]:
        """All-zero layers a step now would leave alone (``_held`` without its warnings)."""
        return zero_layers(self.masks) if self.exclude_zero_layers else []

    def _held(self) -> frozenset[str]:
        """All-zero layers this step leaves alone (one warning each, the first time)."""
        zero = self._zero_layers()
        for name in zero:
            if name not in self.excluded:
                self.excluded.append(name)
                log.warning("%s: every weight is zero at scoring time; left out of pruning "
                            "(set prune.prune_zero_layers: true to prune it anyway)", name)
        return frozenset(zero)


def zero_layers(masks: MaskSet) -> list[str]:
    """Layers that still keep weights but whose kept weights are all exactly zero.

    torchvision zero-initialises ``VisionTransformer.heads.head`` (and others zero some
    residual branches): every score with a factor |θ| (magnitude, SNIP, SynFlow) is 0 there,
    so a global threshold empties the layer first, which disconnects the network."""
    out = []
    for name, p in masks.params.items():
        m = masks[name]
        if bool(m.any()) and not bool((p.detach() * m).any()):
            out.append(name)
    return out
