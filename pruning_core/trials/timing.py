"""When pruning happens: each timing turns the schedule into a *plan*, a flat list of actions.

A plan is data, so the executor in ``experiment.py`` is one short loop, a checkpoint is just
"the state after action i", and a resumed trial skips the actions already done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..base.errors import ConfigError
from ..base.registry import Registry

if TYPE_CHECKING:  # a type only: config validates names through registries, which import this
    from ..config import TrialConfig


@dataclass(frozen=True)
class Prune:
    sparsity: float


@dataclass(frozen=True)
class Train:
    """One epoch of a training phase (the LR schedule runs over the phase)."""

    epoch: int
    epochs: int


@dataclass(frozen=True)
class NewOptimizer:
    """Start a training phase with a fresh optimiser (after pruning, rewinding, re-init)."""


@dataclass(frozen=True)
class Snapshot:
    """Remember the weights (IMP's rewind point)."""


@dataclass(frozen=True)
class Rewind:
    """Reset kept weights to the snapshot (pruned ones stay zero)."""


@dataclass(frozen=True)
class ApplyVariant:
    """Post-pruning re-initialisation or random sparse re-initialisation (WACV 2020)."""


@dataclass(frozen=True)
class Compact:
    """Rebuild the network without its removed channels (``prune.granularity: channel``);
    the optimiser's state is carried over for the kept channels."""


Action = Prune | Train | NewOptimizer | Snapshot | Rewind | ApplyVariant | Compact
Timing = Callable[["TrialConfig", list[float]], list[Action]]
TIMINGS: Registry[Timing] = Registry("timing")


def _phase(epochs: int) -> list[Action]:
    return [NewOptimizer(), *(Train(e, epochs) for e in range(epochs))]


@TIMINGS.register("before")
def before(cfg: TrialConfig, sparsities: list[float]) -> list[Action]:
    """Prune at initialisation (SNIP, SNIP-it, GraSP, SynFlow), then train."""
    return [*(Prune(s) for s in sparsities), ApplyVariant(), *_phase(cfg.train.epochs)]


def default_prune_epochs(epochs: int, events: int) -> list[int]:
    """Prune events spread evenly over the first half of training."""
    span = max(epochs // 2, 1)
    return [i * span // events for i in range(events)]


@TIMINGS.register("during")
def during(cfg: TrialConfig, sparsities: list[float]) -> list[Action]:
    """Prune events inside training (SNIP-it-during, GMP with the cubic schedule)."""
    epochs = cfg.train.epochs
    at = cfg.prune.timing.prune_epochs
    if at is None:
        at = default_prune_epochs(epochs, len(sparsities))
    elif len(at) != len(sparsities):
        raise ConfigError(
            f"prune.timing.prune_epochs: {len(at)} epochs given for {len(sparsities)} schedule "
            f"steps ({', '.join(f'{s:.3f}' for s in sparsities)}); give one epoch per step"
        )
    if any(e < 0 or e >= epochs for e in at) or sorted(at) != list(at):
        raise ConfigError(
            f"prune.timing.prune_epochs: {at} must be increasing epochs in [0, {epochs})"
        )
    plan: list[Action] = [NewOptimizer()]
    for e in range(epochs):
        plan += [Prune(s) for s, when in zip(sparsities, at, strict=True) if when == e]
        plan.append(Train(e, epochs))
    return plan


@TIMINGS.register("after")
def after(cfg: TrialConfig, sparsities: list[float]) -> list[Action]:
    """Train dense, prune (magnitude pruning's home), then fine-tune for train.epochs."""
    return [*_phase(cfg.prune.timing.pretrain_epochs), *(Prune(s) for s in sparsities),
            ApplyVariant(), *_phase(cfg.train.epochs)]


@TIMINGS.register("imp")
def imp(cfg: TrialConfig, sparsities: list[float]) -> list[Action]:
    """Iterative magnitude pruning with rewinding (lottery tickets): one level per schedule step.

    As open_lth (``lottery/runner.py`` + ``training/train.py``): train T epochs; then per level:
    prune, rewind the kept weights (and buffers) to their values after ``rewind_epoch`` = k
    epochs, start a fresh optimiser and train epochs k..T-1 with the LR schedule resumed at k
    (``train(start_step=k)`` steps the schedule k times first), i.e. T - k epochs.
    k = 0 is the original lottery ticket (Frankle & Carbin 2019): rewind to initialisation and
    retrain all T epochs.
    """
    epochs, k = cfg.train.epochs, cfg.prune.timing.rewind_epoch
    if k >= epochs > 0:
        raise ConfigError(
            f"prune.timing.rewind_epoch: {k} leaves no epoch to retrain after rewinding "
            f"(train.epochs={epochs}); use a rewind epoch in [0, {epochs - 1}]"
        )
    plan: list[Action] = [NewOptimizer()]
    if k == 0:
        plan.append(Snapshot())
    for e in range(epochs):
        plan.append(Train(e, epochs))
        if e + 1 == k:
            plan.append(Snapshot())
    for s in sparsities:
        plan += [Prune(s), Rewind(), NewOptimizer(), *(Train(e, epochs) for e in range(k, epochs))]
    return plan


def with_compaction(plan: list[Action]) -> list[Action]:
    """``plan`` with a :class:`Compact` right after its last :class:`Prune` (none if it never
    prunes): channels removed by earlier prune events stay masked until then, so a gradual
    (``during``) schedule nests every event on the full network."""
    last = max((i for i, a in enumerate(plan) if isinstance(a, Prune)), default=None)
    if last is None:
        return list(plan)
    return [*plan[:last + 1], Compact(), *plan[last + 1:]]
