"""Packs in a sweep (``budget.pack: K``): one Ray trial trains up to K sampled configs at once.

The members of a pack are trials to everyone but Ray: the searcher asks Optuna once per member
and tells it each member's own result (``study.StudySearch``), the trainable runs them through
``pruning_core.packing.run_pack`` and reports per member (:func:`run_pack_trial`), and the
recorder writes one row per member (``recorder.Recorder``), each under its own trial id,
:func:`member_id` (``<ray trial id>-m<i>``), stable across ``--resume`` (Ray keeps its trial
ids, and a member's index in its pack is fixed when the pack is sampled).

What a pack reports, per member (:func:`expand` reads them back on the driver):

- an epoch report of member ``i`` (but its last, whose metrics the final report carries, as
  for an unpacked trial): the same keys as an unpacked trial's epoch report, plus
  ``pack_member: i``;
- when ``run_pack`` knows a member's result (``on_result``), its final report: the same keys
  as an unpacked trial's final report (``final: True``), plus ``pack_member: i``; or, for a
  member the sweep's scheduler stopped, its last epoch report again with ``member_stopped``
  (the driver records it ``stopped_early``, the study ``PRUNED``). The member's W&B run is
  opened at its first epoch and finished here.

Member reports are sent together: one Tune report carries every member report since the last
(:func:`batched_report`), sent when the pack's checkpoint is due (at most every
``checkpoint_s``), when a member reaches a rung of the sweep's early stopping (it then waits
for the driver's decision, ``member_stops.py``), and when the pack ends. A report carrying a
final has a checkpoint (:class:`PackState`) in which that member is done, so a pack resumed
after it trains only the members not yet reported; a pack killed before such a report
re-trains those members from its last checkpoint, as an unpacked trial killed mid-epoch does.
One Tune report per member cost what a whole trial costs (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

#: the sampled config of a pack trial: ``{PACK_KEY: [member config, ...]}``
PACK_KEY = "__pack__"
#: the member index every report of a pack carries
PACK_MEMBER = "pack_member"
#: ``done`` in a pack's checkpoint: member index (str) -> its final report
_DONE, _STATES = "done", "states"
#: one Tune report of a pack: the member reports it carries (JSON text of their list)
PACK_REPORTS = "pack_reports"
#: a member the sweep's scheduler stopped early: its last epoch report, sent again with this
STOPPED_FLAG = "member_stopped"
#: the most member reports one Tune report carries
MAX_BATCH = 256


def expand(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The member reports one Tune report of a pack carries (``[result]`` for any other)."""
    text = result.get(PACK_REPORTS)
    if text is None:
        return [dict(result)]
    return list(json.loads(text))


def member_reports(trial_id: str, result: Mapping[str, Any],
                   ) -> list[tuple[str, int, dict[str, Any]]]:
    """(member id, member index, report) of each member report a pack's Tune report carries."""
    return [(member_id(trial_id, int(r[PACK_MEMBER])), int(r[PACK_MEMBER]), r)
            for r in expand(result) if r.get(PACK_MEMBER) is not None]


def batched_report(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One Tune report for several member reports: all of them under ``PACK_REPORTS``, and the
    last one's keys at the top (Tune wants the searched metrics in every report; a pack trial's
    ``last_result`` then reads as its last member's), without ``pack_member``."""
    top = {k: v for k, v in reports[-1].items() if k not in (PACK_MEMBER, STOPPED_FLAG)}
    return {**top, PACK_REPORTS: json.dumps(list(reports), default=_plain)}


def _plain(value: Any) -> Any:
    """JSON for the numpy / torch scalars a report may hold."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def member_id(trial_id: str, i: int) -> str:
    """The trial id of member ``i`` of Ray trial ``trial_id`` (its row's ``trial_id``)."""
    return f"{trial_id}-m{i}"


def members(config: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    """A Ray trial's member configs, or None for an unpacked trial."""
    if not config or PACK_KEY not in config:
        return None
    return list(config[PACK_KEY])


def member_ids(trial_id: str, config: Mapping[str, Any] | None) -> list[str]:
    """The row ids a Ray trial writes: its members', or its own."""
    ms = members(config)
    return [trial_id] if ms is None else [member_id(trial_id, i) for i in range(len(ms))]


class PackState:
    """A pack's checkpoint: each unfinished member's last ``EpochReport.checkpoint()`` and each
    finished member's final report (JSON text, NaN kept)."""

    def __init__(self, n: int, saved: dict[str, Any] | None = None) -> None:
        saved = saved or {}
        self.states: list[Any] = list(saved.get(_STATES) or [None] * n)
        self.done: dict[int, dict[str, Any]] = {
            int(k): json.loads(v) for k, v in (saved.get(_DONE) or {}).items()}

    def todo(self) -> list[int]:
        return [i for i in range(len(self.states)) if i not in self.done]

    def saved(self) -> dict[str, Any]:
        return {_STATES: self.states,
                _DONE: {str(k): json.dumps(v) for k, v in self.done.items()}}


def run_pack_trial(
    member_configs: Sequence[dict[str, Any]], trial_id: str, *,
    build: Callable[[dict[str, Any], str], tuple[Any, dict[str, Any]]],
    run_fn: Any, extra: dict[str, Any], live: Callable[[str, dict[str, Any]], Any],
    epoch_metrics: Callable[[Any], dict[str, Any]],
    final_metrics: Callable[[Any, Any, Any], dict[str, Any]],
    report: Callable[[dict[str, Any], dict[str, Any] | None], None],
    saved: dict[str, Any] | None, checkpoint_s: float = 5.0, stops: Any = None,
) -> None:
    """Run one Ray trial's pack and report per member.

    ``build(member config, member id)`` -> (TrialConfig, the config dict W&B shows);
    ``run_fn``: None for ``run_pack``, else a per-trial run function (tests, benchmarks) run
    member by member; ``live(member id, config)`` opens that member's W&B run (a
    ``wandb_log.TrialRun``); ``epoch_metrics(report)`` / ``final_metrics(result, last report,
    cfg)``: the report dicts an unpacked trial sends; ``report(metrics, state)`` sends one
    report with the pack's checkpoint ``state`` (None: none); ``saved``: the checkpoint
    resumed from; ``checkpoint_s``: the least time between two checkpoints of the pack
    (and so between two reports, but for rungs and the end); ``stops``: the sweep's early
    stopping (``member_stops.StopClient``), or None."""
    state = PackState(len(member_configs), saved)
    todo = state.todo()
    ids = [member_id(trial_id, i) for i in range(len(member_configs))]
    members = _Members(state, todo, ids, {i: build(dict(member_configs[i]), ids[i]) for i in todo},
                       live, epoch_metrics, final_metrics, report, checkpoint_s, stops)
    try:
        _run_members([members.built[i][0] for i in todo], [state.states[i] for i in todo],
                     run_fn, extra, members.on_epoch, members.on_result)
        members.flush(keep=True)
    except BaseException as exc:
        code = 0 if isinstance(exc, SystemExit) and not exc.code else 1
        if isinstance(exc, Exception):  # the pack raised: what ended so far is still told
            try:
                members.flush(keep=True)
            except Exception:  # the report itself failing: the pack's retry re-runs them
                pass
        for run in members.runs.values():
            run.finish(exit_code=code)  # a finished run's finish does nothing
        raise


class _Members:
    """A pack's members as ``run_pack`` reports them: each one's live W&B run, and its epoch
    and final reports, queued and sent together (module doc)."""

    def __init__(self, state: PackState, todo: list[int], ids: list[str],
                 built: dict[int, tuple[Any, dict[str, Any]]],
                 live: Callable[[str, dict[str, Any]], Any],
                 epoch_metrics: Callable[[Any], dict[str, Any]],
                 final_metrics: Callable[[Any, Any, Any], dict[str, Any]],
                 report: Callable[[dict[str, Any], dict[str, Any] | None], None],
                 checkpoint_s: float, stops: Any = None) -> None:
        self.state, self.todo, self.ids, self.built = state, todo, ids, built
        self.live, self.epoch_metrics, self.final_metrics = live, epoch_metrics, final_metrics
        self.report, self.checkpoint_s, self.stops = report, checkpoint_s, stops
        # a member's W&B run is opened at its first epoch and finished with its result, so a
        # pack whose members run one after another holds one open run (with its system-metrics
        # sampler) at a time, as unpacked trials do, not K for the whole pack
        self.runs: dict[int, Any] = {}
        self.last_report: dict[int, Any] = {}  # each member's last EpochReport
        self.last: dict[int, dict[str, Any]] = {}  # and the metrics reported from it
        self.pending: list[dict[str, Any]] = []
        self.ended = False  # a final (or stopped) report is pending
        self.clock = time.monotonic()

    def run_of(self, i: int) -> Any:
        if i not in self.runs:
            self.runs[i] = self.live(self.ids[i], self.built[i][1])
        return self.runs[i]

    def on_epoch(self, k: int, epoch_report: Any) -> bool:
        """Queue member ``k``'s epoch report; True when the sweep's scheduler stops it."""
        i = self.todo[k]
        self.last_report[i] = epoch_report
        self.run_of(i).log(epoch_report.metrics, epoch_report.epoch)
        self.state.states[i] = epoch_report.checkpoint()
        # as an unpacked trial: the last epoch's metrics go out with the final report
        if epoch_report.epoch == epoch_report.total_epochs:
            return False
        metrics = {**self.epoch_metrics(epoch_report), PACK_MEMBER: i}
        self.last[i] = metrics
        self.pending.append(metrics)
        if self.stops is not None and self.stops.asks(self.ids[i], metrics):
            token = self.stops.token()
            self.pending[-1] = {**metrics, self.stops.ASK: token}
            self.flush(keep=self._due())
            return self.stops.stopped(token)
        self.flush(keep=self._due(), only_if_due=True)
        return False

    def on_result(self, k: int, result: Any) -> None:
        i = self.todo[k]
        if result.status == "stopped" and i in self.last:  # the sweep's scheduler stopped it
            final = {**self.last[i], STOPPED_FLAG: True}
            self.run_of(i).finish(exit_code=0)
        else:
            final = {**self.final_metrics(result, self.last_report.get(i), self.built[i][0]),
                     PACK_MEMBER: i}
            self.run_of(i).finish(summary={**final, "status": result.status})
        self.state.done[i] = final
        self.state.states[i] = None
        self.pending.append(final)
        self.ended = True
        self.flush(keep=True, only_if_due=True)

    def _due(self) -> bool:
        return time.monotonic() - self.clock >= self.checkpoint_s

    def flush(self, keep: bool, only_if_due: bool = False) -> None:
        """Send the queued member reports as one Tune report, with the pack's checkpoint when
        ``keep``. ``only_if_due``: only when the checkpoint is due (or the queue is full)."""
        if not self.pending:
            return
        if only_if_due and not self._due() and len(self.pending) < MAX_BATCH:
            return
        reports, self.pending = self.pending, []
        if keep or self.ended:  # a member's end goes out with a checkpoint where it is done
            self.clock, self.ended = time.monotonic(), False
            self.report(batched_report(reports), self.state.saved())
        else:
            self.report(batched_report(reports), None)


def _run_members(cfgs: list[Any], resume: list[Any], run_fn: Any, extra: dict[str, Any],
                 on_epoch: Callable[[int, Any], bool],
                 on_result: Callable[[int, Any], None]) -> None:
    """The members through ``run_pack``, or (a per-trial ``run_fn``: fault injection,
    benchmarks) one after another, each stopped as ``run_pack`` stops one."""
    if run_fn is None:
        from pruning_core.packing import run_pack

        run_pack(cfgs, on_epoch=on_epoch, resume=resume, on_result=on_result, **extra)
        return
    from pruning_core.packing import stopped_result
    from pruning_core.packing.engine import StopMember

    for k, cfg in enumerate(cfgs):
        last: list[Any] = []

        def member_epoch(report: Any, k: int = k, last: list[Any] = last) -> None:
            last[:] = [report]
            if on_epoch(k, report):
                raise StopMember

        try:
            result = run_fn(cfg, on_epoch=member_epoch, resume=resume[k])
        except StopMember:
            result = stopped_result(cfg, last[0])
        on_result(k, result)


def save_state(state: dict[str, Any], d: str, name: str) -> None:
    import torch

    torch.save(state, Path(d, name))


def report_with_state(report: Callable[[dict[str, Any], Any], None], file_name: str,
                      ) -> Callable[[dict[str, Any], dict[str, Any] | None], None]:
    """``report(metrics, checkpoint)`` (``tune.report`` with retries) -> a reporter that saves
    the pack's state as ``file_name`` in a fresh checkpoint directory."""
    def send(metrics: dict[str, Any], state: dict[str, Any] | None) -> None:
        if state is None:
            report(metrics, None)
            return
        with tempfile.TemporaryDirectory() as d:
            save_state(state, d, file_name)
            report(metrics, d)
    return send


def nan_free(values: dict[str, Any]) -> dict[str, Any]:
    """For logs: the values that are set."""
    return {k: v for k, v in values.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))}
