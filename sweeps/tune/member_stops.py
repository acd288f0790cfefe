"""Early stopping per pack member (``budget.pack`` with a ``scheduler:``; docs/packing.md).

Ray's schedulers stop whole Ray trials, and a pack is one Ray trial of K sampled configs. Here
the sweep's rule (ASHA, or the dominated-only rule of ``schedulers.DominatedStopper``) decides
per *member*, on the driver, where the rule's state lives as it does for unpacked trials:

- :class:`MemberStopper` is the sweep's Ray Tune scheduler (a ``FIFOScheduler``: public API).
  It never stops a pack; it reads each member report a pack sends (``pack.expand``), applies
  the rule to it under the member's trial id and config, and posts the decision of every report
  that waits for one to the :class:`StopBoard`;
- a member whose report reaches a rung (``StopClient.asks``: the rule's own rung positions, on
  the same ``progress`` clock) sends its reports at once, marked with a token, and waits for
  the decision on the board (``StopClient.stopped``); a stopped member ends after that epoch
  (``run_pack``: masked out of the batch, its pack-mates go on) and is recorded
  ``stopped_early``, its study trial ``PRUNED``, as an unpacked trial the scheduler stops.

The board is a named Ray actor of the sweep's job (``board_name``), started by the driver
before the trials (:func:`start_board`) and looked up by name by the scheduler and the packs,
so a resumed sweep (whose scheduler Tune restores) finds its new board under the same name.
A decision that does not come within ``STOP_WAIT_S`` lets the member go on (logged).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from sweeps.tune.pack import STOPPED_FLAG, member_reports, members
from sweeps.tune.plan_clock import scheduler_clock
from sweeps.tune.schedulers import make_scheduler
from sweeps.tune.stop_client import ASK, StopSpec, board_name
from sweeps.tune.trainable import FINAL_FLAG, PROGRESS

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from sweeps.tune.plan import SweepPlan

log = logging.getLogger(__name__)

class AshaRule:
    """ASHA's rule for one member report: Ray Tune's ``ASHAScheduler`` with one bracket (its
    default), as ``ray/tune/schedulers/async_hyperband.py`` (``_Bracket.on_result``,
    ``cutoff``) computes it, keyed by trial id instead of a Ray ``Trial``.

    Rungs at ``grace × rf^k`` (``k`` below ``log(max_t / grace) / log(rf) + 1``). A report
    reaching rungs the trial has not passed is judged at the highest of them against the values
    recorded there before it: below the ``(1 - 1/rf)`` percentile (NaN ignored) it stops; its
    value is then recorded. A report at or past ``max_t`` stops (``stop_last_trials``); a final
    report is only recorded, as Ray's ``on_trial_complete`` does.

    One deliberate difference: every rung a report reaches counts as passed (as
    ``DominatedStopper`` does). Ray's bracket would judge a rung skipped by a long step (an
    epoch spanning two rungs) on the trial's next report; here a pack asks for a decision only
    when a report reaches new rungs, so the rule never decides on a report nobody waits on."""

    def __init__(self, time_attr: str, metric: str, mode: str, max_t: float,
                 grace_period: float, reduction_factor: float, final_flag: str) -> None:
        self.time_attr, self.metric, self.final_flag = time_attr, metric, final_flag
        self.sign = 1.0 if mode == "max" else -1.0
        self.max_t, self.rf = max_t, reduction_factor
        n = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
        #: rung positions, ascending; each with {trial id: its (signed) value there}
        self.rungs = [grace_period * reduction_factor**k for k in range(n)]
        self.recorded: dict[float, dict[str, float]] = {r: {} for r in self.rungs}
        self.passed: dict[str, set[float]] = {}

    @property
    def points(self) -> list[float]:
        """Where a report needs a decision: every rung, and ``max_t``."""
        return sorted({*self.rungs, self.max_t})

    def cutoff(self, recorded: Mapping[str, float]) -> float | None:
        values = [v for v in recorded.values() if not math.isnan(v)]
        if not values:
            return None
        return _percentile(values, (1 - 1 / self.rf) * 100)

    def decide(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> str:
        t, value = result.get(self.time_attr), result.get(self.metric)
        if t is None or value is None:
            return TrialScheduler.CONTINUE
        final = bool(result.get(self.final_flag))
        passed = self.passed.setdefault(trial_id, set())
        reached = [r for r in self.rungs if r <= t and r not in passed]
        passed.update(reached)
        if not final and t >= self.max_t:
            return TrialScheduler.STOP
        if not reached:
            return TrialScheduler.CONTINUE
        recorded = self.recorded[reached[-1]]
        reward = self.sign * float(value)
        cutoff = self.cutoff(recorded)
        recorded[trial_id] = reward
        if not final and cutoff is not None and reward < cutoff:
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def _percentile(values: Sequence[float], q: float) -> float:
    """numpy's default (linear) percentile, as ``np.nanpercentile`` of non-NaN values."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class MemberStopper(FIFOScheduler):
    """The sweep's scheduler when it packs trials: the rule applied per member (module doc)."""

    def __init__(self, rule: Any, sweep: str) -> None:
        super().__init__()
        self.rule, self.sweep = rule, sweep
        self.stopped: list[tuple[str, float]] = []
        self._board: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_board"] = None  # an actor handle: looked up again by name
        return state

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        configs = members(trial.config)
        if configs is None:
            return TrialScheduler.CONTINUE
        for mid, i, report in member_reports(trial.trial_id, result):
            if report.get(STOPPED_FLAG):
                continue
            decision = self.rule.decide(mid, configs[i], report)
            token = report.get(ASK)
            if decision == TrialScheduler.STOP:
                self.stopped.append((mid, float(report.get(self.rule.time_attr, math.nan))))
                if token is None:
                    log.warning("member %s: the rule stops it on a report that waits for no "
                                "decision; it goes on", mid)
            if token is not None:
                self.board().post.remote(token, decision == TrialScheduler.STOP)
        return TrialScheduler.CONTINUE

    def board(self) -> Any:
        if self._board is None:
            self._board = start_board(self.sweep)
        return self._board

    def debug_string(self) -> str:
        return f"per-member early stopping; stopped {len(self.stopped)} members"


class StopBoard:
    """Decisions from the driver's :class:`MemberStopper` to the packs waiting for them (a Ray
    async actor: a ``wait`` holds no thread)."""

    def __init__(self) -> None:
        self.decisions: dict[str, bool] = {}
        self.events: dict[str, asyncio.Event] = {}

    def _event(self, token: str) -> asyncio.Event:
        return self.events.setdefault(token, asyncio.Event())

    async def post(self, token: str, stop: bool) -> None:
        self.decisions[token] = stop
        self._event(token).set()

    async def wait(self, token: str, timeout_s: float) -> bool | None:
        """The decision for ``token``; None when none came within ``timeout_s``."""
        event = self._event(token)
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return None
        finally:
            self.events.pop(token, None)
        return self.decisions.pop(token, None)


def start_board(sweep: str) -> Any:
    """The sweep's board actor (started here, or the running one; on the driver's node,
    restarted if it dies: ``driver_actor.start_service``)."""
    from sweeps.tune.driver_actor import start_service

    return start_service(StopBoard, board_name(sweep))


def member_rule(plan: SweepPlan) -> Any:
    """The sweep's rule for members (None without a scheduler): what ``make_scheduler`` builds
    for unpacked trials, as a rule with ``decide(trial_id, config, result)``."""
    space = plan.space
    if space.scheduler is None:
        return None
    if space.scheduler.name == "dominated":
        return make_scheduler(plan)  # DominatedStopper: its decide() is the rule
    s = space.scheduler
    grace, max_t, _ = scheduler_clock(s, plan.fixed)
    return AshaRule(PROGRESS, s.metric, s.mode, max_t, grace, s.reduction_factor, FINAL_FLAG)


def stop_spec(plan: SweepPlan) -> StopSpec | None:
    """The packs' side of the sweep's early stopping (None: none, or an unpacked sweep)."""
    if plan.space.budget.pack == 1:
        return None
    rule = member_rule(plan)
    if rule is None:
        return None
    points = rule.points if isinstance(rule, AshaRule) else rule.rungs
    return StopSpec(board_name(plan.space.name), tuple(float(p) for p in points),
                    rule.time_attr)


def sweep_scheduler(plan: SweepPlan) -> Any:
    """The sweep's scheduler: ``schedulers.make_scheduler``'s, or, in a packed sweep, its rule
    per member (:class:`MemberStopper`); None without a ``scheduler:``."""
    if plan.space.budget.pack == 1 or plan.space.scheduler is None:
        return make_scheduler(plan)
    return MemberStopper(member_rule(plan), plan.space.name)
