"""A sweep's plan: its fixed settings validated once into a ``TrialConfig``, with the space.

Validation (``space_validate.validate_space``), the launcher and the scheduler receive this
object instead of each turning ``space.base_config()`` into a ``TrialConfig`` again; a trial's
config is the plan's base with its sampled values merged in (``trial_dict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pruning_core.base.errors import ConfigError
from pruning_core.config import TrialConfig
from pruning_core.trials.registries import load_trial_config
from sweeps.tune.space_keys import trial_dict

if TYPE_CHECKING:
    from sweeps.tune.space_protocol import SpaceView as SearchSpace


@dataclass(frozen=True)
class SweepPlan:
    """``space``; ``base``: its fixed settings as a nested dict (what every trial starts from);
    ``fixed``: ``base`` validated (searched keys at their defaults)."""

    space: SearchSpace
    base: dict[str, Any]
    fixed: TrialConfig

    def trial_dict(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """The base with one sampled config (nested, as Ray passes it) merged in."""
        return trial_dict(self.base, sampled)

    def trial_config(self, sampled: dict[str, Any]) -> TrialConfig:
        return load_trial_config(self.trial_dict(sampled))


def plan_sweep(space: SearchSpace, threads: int | None = None) -> SweepPlan:
    """Validate ``space``'s fixed settings once; ``threads``: the ``train.threads`` of a trial
    that sets none (the launcher records it, so a schedule exported from the rows replays the
    trial bit for bit). ``ConfigError`` ``fixed: ...`` when they are not a valid config."""
    base = space.base_config()
    if threads is not None:
        base.setdefault("train", {}).setdefault("threads", threads)
    try:
        fixed = load_trial_config(base)
    except ConfigError as exc:
        raise ConfigError(f"fixed: {exc}") from None
    return SweepPlan(space, base, fixed)
