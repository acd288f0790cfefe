"""Batched scoring: the prune-step scores of a pack's members from one vmapped pass.

Members that prune at the same point with the same criterion and options (and equally shaped
scoring batches) are scored together: their weights are stacked (``StackedModels``) and the
criterion's pass runs once under ``vmap``, each member on its own weights, buffers and batches.
The scores are handed to each member's :class:`~pruning_core.masking.engine.Pruner`, which
chooses its masks from them exactly as from its own scores. SNIP and SynFlow batch on the
devices in ``DEVICES`` (CUDA; on a CPU the pass is compute-bound and batching was slower),
magnitude everywhere.

**The masks stay the solo ones.** A vmapped gradient sums in another order than K solo passes,
so batched SNIP/SynFlow scores differ from the solo ones in the last bits, and a weight at the
selection boundary could change sides. So the group's first member is also scored alone (its
masks come from its own scores) and, batched, with one pack-mate; that measures the pass's error
on this network: ``rel``, the largest error relative to the score itself (scores over a
thousandth of the layer's largest), and ``abs``, the largest relative to the layer's largest
(the smaller scores). Every other member
checks that its masks are the same for any scores within ``SAFETY`` times that of its batched
ones (``Pruner._margin_holds``) and scores alone where they are not. Where the error is over
``MAX_RTOL`` (ResNet-20's SNIP on CPU), where the pack-mate scored in the probe would not
take its batched scores (checked before the full pass), or where most members of a pass had to
score again, the pack's members score that criterion alone from then on (``Ledger``).

Batched here: ``magnitude`` (|θ| of the stacked weights: bitwise the solo scores), ``snip``
(both modes and estimators) and ``synflow`` (float32, or float64 where asked; a member whose
float32 scores overflow scores alone, as ``precision: auto`` then recomputes in float64).
Member by member, as in a solo run: GraSP (a double backward through the batch, and its
``reinit_linear`` draws come from each member's generator), ``random`` (per-member draws, no
pass to batch), SparseGPT and Wanda (they rewrite weights layer by layer), SynFlow on a model
with attention or LayerNorm (scored on a linearised copy), channel criteria, and any member
whose allocation reads scores beyond their order (LAMP, OWL).

The recipe is PyTorch's model ensembling with ``torch.func`` (pytorch/tutorials
``intermediate_source/ensembling.py``); per-member gradients as ``vmap(grad(...))`` follow
``intermediate_source/per_sample_grads.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..base.registry import Registry
from ..masking.engine import Pruner
from ..masking.linearised import has_attention_or_layernorm
from .batched import StackedModels

log = logging.getLogger(__name__)

Scores = dict[str, torch.Tensor]  # parameter name -> (K, *shape)

#: device types whose passes are batched (exact criteria, magnitude, batch everywhere). A CPU
#: core is already compute-bound by one member's pass, and vmap's grouped convolution is slower
#: there than K plain ones, so on CPU the probe and the checks only add time (cnn1d, K = 32:
#: 0.60 s against 0.53 s per pack, ``bench_member_costs.py``); on CUDA a solo pass is bound by
#: kernel launches. Tests add "cpu" to run the batched path on CPU.
DEVICES = {"cuda"}

#: a member's batched scores are trusted to ``SAFETY`` times the error measured on the
#: group's first member; never less than ``MIN_RTOL`` (an error of 0 is not a bound)
SAFETY = 10.0
MIN_RTOL = 1e-7
#: beyond this tolerance batching does not pay: the check would send most members back to
#: score alone (measured on CPU, see docs/packing.md)
MAX_RTOL = 1e-4


@dataclass(frozen=True)
class BatchedCriterion:
    """``fn(stack, pruners, names)``: every member's scores, stacked; ``exact``: bitwise the
    solo scores (no check needed)."""

    fn: Callable[[StackedModels, Sequence[Pruner], list[str]], Scores]
    exact: bool = False
    #: whether this member can join (beyond the shared checks in ``scorable``)
    accepts: Callable[[Pruner], bool] = lambda p: True


BATCHED: Registry[BatchedCriterion] = Registry("batched criterion")


def scorable(pruner: Any) -> bool:
    """Whether ``pruner``'s next step can take batched scores."""
    if not (isinstance(pruner, Pruner) and type(pruner).step is Pruner.step
            and pruner.criterion in BATCHED and pruner.accepts_given_scores()
            and pruner.loss_fn is nn.functional.cross_entropy):
        return False
    batched = BATCHED.get(pruner.criterion)
    device = next(iter(pruner.masks.params.values())).device.type
    return batched.accepts(pruner) and (batched.exact or device in DEVICES)


def group_key(pruner: Pruner) -> tuple[Any, ...]:
    """Members with one key can be scored in one pass."""
    batches = tuple((tuple(x.shape), x.dtype, tuple(y.shape), y.dtype, str(x.device))
                    for x, y in pruner.batches) if pruner._criterion.needs_data else ()
    return (pruner.criterion, pruner._options.model_dump_json(), tuple(pruner.masks.params),
            batches)


@dataclass
class Ledger:
    """A pack's record of its batched passes, so that batching stops where it does not pay:
    a criterion whose pass errs by more than ``MAX_RTOL``, or whose last pass sent more than
    half of its members back to score alone (a large network's scores lie densely around the
    boundary), scores member by member for the rest of the pack."""

    declined: set[tuple[Any, ...]] = field(default_factory=set)
    #: the members handed batched scores by each group's last pass, with their
    #: ``given_rescored`` count then
    last: dict[tuple[Any, ...], list[tuple[Pruner, int]]] = field(default_factory=dict)

    def settle(self, key: tuple[Any, ...]) -> None:
        """Decline ``key`` if most members of its last pass scored again (their steps ran)."""
        handed = self.last.pop(key, [])
        again = sum(p.given_rescored > before for p, before in handed)
        if handed and again * 2 > len(handed):
            self.declined.add(key)
            log.info("%s: %d of %d members' batched scores were too close to call; members "
                     "score alone", key[0], again, len(handed))


def give_scores(models: Sequence[nn.Module], pruners: Sequence[Pruner],
                sparsities: Sequence[float], ledger: Ledger | None = None) -> int:
    """Score every group of two or more members in one pass each and hand each member its
    scores (``Pruner.given``) for its next step, to ``sparsities[i]``; returns the members
    given batched scores. Each member's ``elapsed_s`` gets its share of the pass. ``ledger``:
    the pack's record (which criteria score member by member)."""
    ledger = Ledger() if ledger is None else ledger
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, p in enumerate(pruners):
        if scorable(p):
            groups.setdefault(group_key(p), []).append(i)
    given = 0
    for key, idx in groups.items():
        ledger.settle(key)
        if len(idx) < 2 or key in ledger.declined:
            continue
        group = [pruners[i] for i in idx]
        given += _score_group([models[i] for i in idx], group, [sparsities[i] for i in idx],
                              key, ledger)
    return given


def _score_group(models: Sequence[nn.Module], group: Sequence[Pruner],
                 sparsities: Sequence[float], key: tuple[Any, ...], ledger: Ledger) -> int:
    start = time.perf_counter()
    batched = BATCHED.get(group[0].criterion)
    names = list(group[0].masks.params)

    def scores_of(first: int) -> list[dict[str, torch.Tensor]]:
        out = batched.fn(StackedModels(models[first:]), group[first:], names)
        return [{n: out[n][k] for n in names} for k in range(len(group) - first)]

    tol = (0.0, 0.0)
    if batched.exact:
        mine = scores_of(0)
    else:  # the error measured on two members first: a declined pass costs two, not K
        own = group[0].scores()  # the first member's masks come from its own scores
        group[0].given = (own, (0.0, 0.0))
        probe = batched.fn(StackedModels(models[:2]), group[:2], names)
        rel, absolute = _error(own, {n: probe[n][0] for n in names})
        tol = (max(SAFETY * rel, MIN_RTOL), max(SAFETY * absolute, MIN_RTOL))
        # the pack-mate's check, before the pass: where it fails, most would (large layers
        # crowd their scores around the boundary) and the pass would be paid for nothing;
        # where it holds, the pack-mate keeps its probe scores and the pass is for the rest
        mate = {n: probe[n][1] for n in names}
        if max(tol) <= MAX_RTOL and not group[1].would_take(sparsities[1], mate, tol):
            tol = (float("nan"), float("nan"))
        mine = [own, mate, *(scores_of(2) if len(group) > 2 else [])] \
            if max(tol) <= MAX_RTOL else []
    share = (time.perf_counter() - start) / len(group)
    for p in group:
        p.elapsed_s += share
    if not max(tol) <= MAX_RTOL:  # NaN included: the pack-mate's check failed
        ledger.declined.add(key)
        log.info("%s: batched scores too far from solo ones to choose masks here (tolerance "
                 "%.1e); members score alone", group[0].criterion, max(tol))
        return 0
    given = 0
    for k, p in enumerate(group):
        if k == 0 and not batched.exact:
            continue
        if all(bool(torch.isfinite(s).all()) for s in mine[k].values()):
            p.given = (mine[k], tol)  # else its own step decides (SynFlow: float64)
            ledger.last.setdefault(key, []).append((p, p.given_rescored))
            given += 1
    log.debug("scored %d members with %s in one pass (tolerance %.1e, %.1e)", len(group),
              group[0].criterion, *tol)
    return given


#: scores below this share of their layer's largest have their error counted against the largest
#: (``abs``), the others against themselves (``rel``)
SMALL = 1e-3


def _error(own: dict[str, torch.Tensor], batched: dict[str, torch.Tensor]
           ) -> tuple[float, float]:
    """(rel, abs): the largest |batched - own| relative to |own| over the scores of at least
    ``SMALL`` of their layer's largest, and relative to the layer's largest over the others
    (NaN: unusable)."""
    rel = absolute = 0.0
    for n, s in own.items():
        a = s.abs()
        scale = a.max()
        if not bool(torch.isfinite(scale)) or not bool(torch.isfinite(batched[n]).all()):
            return float("nan"), float("nan")
        err = (batched[n].to(s.device) - s).abs()
        if float(scale) == 0.0:
            if bool(err.any()):
                return float("nan"), float("nan")
            continue
        big = a >= SMALL * scale
        if bool(big.any()):
            rel = max(rel, float((err[big] / a[big]).max()))
        if bool((~big).any()):
            absolute = max(absolute, float(err[~big].max() / scale))
    return rel, absolute


def _state(stack: StackedModels) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    params = {n: t.detach() for n, t in stack.params.items()}
    return params, dict(stack.buffers)


def _magnitude(stack: StackedModels, pruners: Sequence[Pruner], names: list[str]) -> Scores:
    return {n: stack.params[n].detach().abs() for n in names}


def _snip(stack: StackedModels, pruners: Sequence[Pruner], names: list[str]) -> Scores:
    """``criteria/snip.py`` per member: the gradient of each scoring batch's mean loss, with
    the buffers cloned for every batch (train mode's statistics updates are thrown away)."""
    opts = pruners[0]._options
    base = stack.base
    base.train(opts.mode == "train")
    per_batch = opts.estimator == "per_batch"
    xs = torch.stack([torch.stack([x for x, _ in p.batches]) for p in pruners])
    ys = torch.stack([torch.stack([y for _, y in p.batches]) for p in pruners])
    params, buffers = _state(stack)

    def member(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor,
               y: torch.Tensor) -> Scores:
        def loss(w: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor
                 ) -> torch.Tensor:
            state = {**p, **w, **{n: t.clone() for n, t in b.items()}}
            return nn.functional.cross_entropy(functional_call(base, state, (xb,)), yb)

        w = {n: p[n] for n in names}
        acc = {n: torch.zeros_like(w[n]) for n in names}
        for j in range(x.shape[0]):
            g = grad(loss)(w, x[j], y[j])
            acc = {n: acc[n] + ((g[n] * w[n]).abs() if per_batch else g[n]) for n in names}
        return acc if per_batch else {n: (acc[n] * w[n]).abs() for n in names}

    return vmap(member, randomness="error")(params, buffers, xs, ys)


def _synflow(stack: StackedModels, pruners: Sequence[Pruner], names: list[str]) -> Scores:
    """``criteria/synflow.py`` per member: |θ| and |float buffers| in eval mode, an all-ones
    input, R = sum(output), score = |θ ⊙ ∂R/∂θ|."""
    dtype = torch.float64 if pruners[0]._options.precision == "float64" else torch.float32
    base = stack.base
    base.eval()
    params = {n: t.detach().abs().to(dtype) for n, t in stack.params.items()}
    buffers = {n: t.abs().to(dtype) if t.is_floating_point() else t
               for n, t in stack.buffers.items()}
    device = params[names[0]].device
    x = torch.ones((1, *pruners[0].input_shape), dtype=dtype, device=device)

    def member(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> Scores:
        def flow(w: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(base, {**p, **w, **b}, (x,)).sum()

        w = {n: p[n] for n in names}
        g = grad(flow)(w)
        return {n: (g[n] * w[n]).abs() for n in names}

    return vmap(member, randomness="error")(params, buffers)


BATCHED.add("magnitude", BatchedCriterion(_magnitude, exact=True))
BATCHED.add("snip", BatchedCriterion(_snip))
BATCHED.add("synflow", BatchedCriterion(
    _synflow, accepts=lambda p: not has_attention_or_layernorm(p.model)))
