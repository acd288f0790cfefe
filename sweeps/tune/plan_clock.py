"""The plan clock: a trial's progress in per-mille of its own plan, and what a scheduler's epochs
(``scheduler.grace_period`` / ``max_t``) are on it.

Below ``space`` (validation checks a scheduler against the fixed config's plan),
``schedulers``, ``trainable`` and ``launch``, which re-export these names; it imports neither
Ray nor any other module of ``sweeps.tune``.
"""

from __future__ import annotations

from typing import Any, Protocol

from pruning_core.base.errors import ConfigError
from pruning_core.config import TrialConfig


class ClockSpec(Protocol):
    """What the clock reads of a scheduler spec (``space.SchedulerSpec``): named here, so this
    module does not import the space, which imports it."""

    grace_period: int
    max_t: int | None

#: a whole plan, in the trial's progress units (per-mille)
PLAN_SCALE = 1000


def plan_progress(epochs: int, plan_epochs: int) -> int:
    """``epochs`` of a plan of ``plan_epochs`` training epochs, in per-mille of the plan.

    Rounded to the nearest per-mille, so equal fractions of different plans give equal values
    (``2/4`` and ``5/10`` are both 500): the scheduler compares trials at the same share.
    """
    return round(PLAN_SCALE * epochs / plan_epochs)


def layer_shapes(cfg: TrialConfig) -> dict[str, tuple[int, ...]]:
    """The prunable layers' weight shapes (the model built on CPU; no data read)."""
    from pruning_core.trials.experiment import prunable_layers

    return {info.name: tuple(info.shape) for info in prunable_layers(cfg)}


def target_sparsity(cfg: TrialConfig, shapes: dict[str, tuple[int, ...]]) -> float:
    """The sparsity ``cfg``'s allocation reaches over ``shapes`` at the end of its plan."""
    from pruning_core.masking.allocation import reached_sparsity

    return reached_sparsity(cfg.prune.allocation, shapes, cfg.prune.sparsity)


def plan_epochs(cfg: TrialConfig) -> int:
    """Training epochs in ``cfg``'s plan, the plan built as ``experiment.run`` builds it.

    Builds the model on CPU for its layer shapes (the target sparsity, so the number of
    schedule steps, can depend on them); reads no data.
    """
    from pruning_core.masking.schedules import sparsity_steps
    from pruning_core.trials.registries import TIMINGS
    from pruning_core.trials.timing import Train

    target = target_sparsity(cfg, layer_shapes(cfg))
    steps = sparsity_steps(cfg.prune.schedule, target, cfg.prune.steps) if target > 0 else []
    return sum(isinstance(a, Train) for a in TIMINGS.get(cfg.prune.timing.name)(cfg, steps))


def scheduler_clock(s: ClockSpec, base: dict[str, Any] | TrialConfig) -> tuple[int, int, int]:
    """The scheduler's ``(grace_period, max_t, reference epochs)`` in per-mille of each trial's
    plan (ASHA's and the dominated rule's rungs alike).

    ``scheduler.grace_period`` / ``max_t`` are epochs of the fixed config's plan (searched keys
    at their defaults; ``reference`` = its training epochs); each becomes the same share of
    every trial's own plan. ``max_t`` unset (or the whole plan) is one past the plan's end:
    ASHA stops a trial *at* ``max_t``, and a trial's last report (``PLAN_SCALE``) must not be
    swallowed; past it, every trial ends on its own.
    """
    from pruning_core.trials.registries import load_trial_config  # torch: not for workers

    fixed = base if isinstance(base, TrialConfig) else load_trial_config(base)
    reference = plan_epochs(fixed)
    if reference == 0:
        raise ConfigError("scheduler: the fixed config's plan trains no epoch (train.epochs: 0); "
                          "set train.epochs in fixed, or remove the scheduler")
    if s.grace_period > reference:
        raise ConfigError(
            f"scheduler.grace_period: {s.grace_period} epochs is past the fixed config's plan "
            f"({reference} training epochs); give at most {reference}")
    if s.max_t is not None and s.max_t < s.grace_period:
        raise ConfigError(f"scheduler.max_t: {s.max_t} is below grace_period="
                          f"{s.grace_period}; give max_t >= grace_period")
    # rounded down: the rungs grace * rf**k then never sit above the progress a trial reports
    # at that exact share of its plan (reports are rounded to the nearest per-mille)
    grace = max(1, PLAN_SCALE * s.grace_period // reference)
    if s.max_t is None or s.max_t >= reference:
        max_t = PLAN_SCALE + 1
    else:
        max_t = plan_progress(s.max_t, reference)
    return grace, max_t, reference
