"""Early stopping that respects several objectives (docs/sweeps.md, "Early stopping").

``DominatedStopper`` is a Ray Tune scheduler (a ``FIFOScheduler`` subclass: public API) that
stops a trial at a rung only when another trial, measured at the same rung, is **strictly
better on every objective**. A trial that is best on any one objective, or that trades one
objective for another, always goes on: the rule never removes a trade-off, only trials that
some other trial beats outright at the same share of its plan.

Rungs sit where ASHA's would (``grace × reduction_factor^k`` per-mille of each trial's plan,
below ``max_t``); as in ASHA, a trial is judged against the trials that reached the rung before
it. Objectives that only grow as a trial's plan goes on are judged optimistically for the trial
being judged: its ``sparsity`` counts as its plan's target (a gradual or ``after`` timing has not
reached it yet at an early rung), while the trials it is compared with count as measured.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweeps.tune.plan_clock import layer_shapes, target_sparsity

if TYPE_CHECKING:
    from ray.tune.experiment import Trial


log = logging.getLogger(__name__)

#: the trial's own optimistic value of an objective, from its config (None: unknown)
Bound = Callable[[dict[str, Any]], dict[str, float]]


def milestones(grace: int, reduction_factor: float, max_t: int) -> list[int]:
    """Rung positions ``grace × rf^k`` (rounded down) below ``max_t``, ascending."""
    out: list[int] = []
    k = 0
    while (m := int(grace * reduction_factor**k)) < max_t:
        if not out or m > out[-1]:
            out.append(m)
        k += 1
    return out


def beats_on_every(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` strictly better than ``b`` on every objective (both oriented: larger is better)."""
    return all(x > y for x, y in zip(a, b, strict=True))


def oriented(values: Sequence[float], modes: Sequence[str]) -> tuple[float, ...]:
    """Values with ``min`` objectives negated, so larger is better everywhere."""
    return tuple(-v if m == "min" else v for v, m in zip(values, modes, strict=True))


class DominatedStopper(FIFOScheduler):
    """Stops a trial at a rung only if a trial at that rung beats it on every objective."""

    def __init__(self, time_attr: str, metrics: Sequence[str], modes: Sequence[str],
                 rungs: Sequence[int], bound: Bound | None = None,
                 final_flag: str | None = None) -> None:
        super().__init__()
        if len(metrics) != len(modes) or not metrics:
            raise ValueError("one mode per metric, at least one metric")
        self.time_attr = time_attr
        self.metrics = list(metrics)
        self.modes = list(modes)
        self.rungs = sorted(rungs)
        self.bound = bound
        self.final_flag = final_flag
        #: rung -> trial id -> its measured (oriented) objectives at that rung
        self.recorded: dict[int, dict[str, tuple[float, ...]]] = {r: {} for r in self.rungs}
        #: trial id -> the rungs it has passed
        self.passed: dict[str, set[int]] = {}
        self._optimistic: dict[str, dict[str, float] | None] = {}
        self.stopped: list[tuple[str, int]] = []

    # ------------------------------------------------------------------ tune hooks
    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        return self.decide(trial.trial_id, trial.config or {}, result)

    def debug_string(self) -> str:
        counts = ", ".join(f"{r}: {len(self.recorded[r])}" for r in self.rungs)
        return (f"Dominated-only stopping on {', '.join(self.metrics)}; trials per rung "
                f"{{{counts}}}; stopped {len(self.stopped)}")

    # ------------------------------------------------------------------ the rule
    def decide(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> str:
        """CONTINUE or STOP for one report (the rule, without Ray objects)."""
        t = result.get(self.time_attr)
        if t is None or (self.final_flag and result.get(self.final_flag)):
            return TrialScheduler.CONTINUE
        passed = self.passed.setdefault(trial_id, set())
        reached = [r for r in self.rungs if r <= t and r not in passed]
        if not reached:
            return TrialScheduler.CONTINUE
        passed.update(reached)
        rung = reached[-1]  # as ASHA: a report past several rungs is judged at the highest
        values = [result.get(m) for m in self.metrics]
        if any(v is None or not math.isfinite(float(v)) for v in values):
            return TrialScheduler.CONTINUE  # nothing to compare (a diverging trial ends itself)
        measured = oriented([float(v) for v in values], self.modes)
        peers = self.recorded[rung]
        optimistic = self._optimistic_values(trial_id, config, values)
        winner = None if optimistic is None else next(
            (p for p, v in peers.items() if beats_on_every(v, oriented(optimistic, self.modes))),
            None)
        peers[trial_id] = measured
        if winner is None:
            return TrialScheduler.CONTINUE
        log.info("trial %s stopped at rung %d: trial %s is better on every objective",
                 trial_id, rung, winner)
        self.stopped.append((trial_id, rung))
        return TrialScheduler.STOP

    def _optimistic_values(self, trial_id: str, config: dict[str, Any],
                           values: Sequence[Any]) -> list[float] | None:
        """The trial's values, each objective it can still only improve on replaced by the best
        it can reach (``bound``); None when that cannot be computed (never stopped then)."""
        if self.bound is None:
            return [float(v) for v in values]
        if trial_id not in self._optimistic:
            try:
                self._optimistic[trial_id] = self.bound(config)
            except Exception:  # the user's factories can raise anything: never stop it then
                log.warning("trial %s: its plan's targets could not be computed; it is never "
                            "stopped early", trial_id, exc_info=True)
                self._optimistic[trial_id] = None
        best = self._optimistic[trial_id]
        if best is None:
            return None
        out = []
        for m, mode, v in zip(self.metrics, self.modes, values, strict=True):
            b = best.get(m)
            pick = max if mode == "max" else min
            out.append(float(v) if b is None else pick(float(v), b))
        return out


# ----------------------------------------------------------------------------- bounds
class TargetSparsity:
    """``config -> {"sparsity": target}``: the sparsity a trial's plan ends at (its allocation's
    target over the model's prunable layers), the most its reported ``sparsity`` can reach.
    Picklable (Tune pickles the scheduler); builds each distinct model once, on CPU."""

    def __init__(self, base: dict[str, Any]) -> None:
        self.base = base
        self._shapes: dict[str, dict[str, tuple[int, ...]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"base": self.base}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["base"])  # type: ignore[misc]

    def __call__(self, config: dict[str, Any]) -> dict[str, float]:
        from pruning_core.trials.registries import load_trial_config
        from sweeps.tune.space import trial_dict

        cfg = load_trial_config(trial_dict(self.base, config))
        prune = cfg.prune.model_dump(include={"include", "exclude", "granularity"})
        key = cfg.model.model_dump_json() + repr(sorted(prune.items()))
        if key not in self._shapes:
            self._shapes[key] = layer_shapes(cfg)
        return {"sparsity": target_sparsity(cfg, self._shapes[key])}
