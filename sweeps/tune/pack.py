"""Packs in a sweep (``budget.pack: K``): one Ray trial trains up to K sampled configs at once.

The members of a pack are trials to everyone but Ray: the searcher asks Optuna once per member
and tells it each member's own result (``study.StudySearch``), the trainable runs them through
``pruning_core.packing.run_pack`` and reports per member (:func:`run_pack_trial`), and the
recorder writes one row per member (``recorder.Recorder``), each under its own trial id,
:func:`member_id` (``<ray trial id>-m<i>``), stable across ``--resume`` (Ray keeps its trial
ids, and a member's index in its pack is fixed when the pack is sampled).

What a pack's reports carry:

- an epoch report of member ``i`` (but its last, whose metrics the final report carries, as
  for an unpacked trial): the same keys as an unpacked trial's epoch report, plus
  ``pack_member: i``, and, at most every ``checkpoint_s`` seconds, a checkpoint of the whole
  pack (:class:`PackState`);
- as soon as ``run_pack`` knows a member's result (``on_result``), its final report: the same
  keys as an unpacked trial's final report (``final: True``), plus ``pack_member: i``, and a
  checkpoint in which that member is done (a pack resumed after it trains only the members not
  yet reported). The member's W&B run is opened at its first epoch and finished here.

Ray's schedulers stop whole Ray trials, so a pack refuses a scheduler (``space.problems``).
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
    saved: dict[str, Any] | None, checkpoint_s: float = 5.0,
) -> None:
    """Run one Ray trial's pack and report per member.

    ``build(member config, member id)`` -> (TrialConfig, the config dict W&B shows);
    ``run_fn``: None for ``run_pack``, else a per-trial run function (tests, benchmarks) run
    member by member; ``live(member id, config)`` opens that member's W&B run (a
    ``wandb_log.TrialRun``); ``epoch_metrics(report)`` / ``final_metrics(result, last report,
    cfg)``: the report dicts an unpacked trial sends; ``report(metrics, state)`` sends one
    report with the pack's checkpoint ``state`` (None: none); ``saved``: the checkpoint
    resumed from; ``checkpoint_s``: the least time between two epoch checkpoints of the
    pack."""
    state = PackState(len(member_configs), saved)
    todo = state.todo()
    ids = [member_id(trial_id, i) for i in range(len(member_configs))]
    members = _Members(state, todo, ids, {i: build(dict(member_configs[i]), ids[i]) for i in todo},
                       live, epoch_metrics, final_metrics, report, checkpoint_s)
    try:
        _run_members([members.built[i][0] for i in todo], [state.states[i] for i in todo],
                     run_fn, extra, members.on_epoch, members.on_result)
    except BaseException as exc:
        code = 0 if isinstance(exc, SystemExit) and not exc.code else 1
        for run in members.runs.values():
            run.finish(exit_code=code)  # a finished run's finish does nothing
        raise


class _Members:
    """A pack's members as ``run_pack`` reports them: each one's live W&B run, its epoch
    reports (the pack's checkpoint at most every ``checkpoint_s``) and its final report."""

    def __init__(self, state: PackState, todo: list[int], ids: list[str],
                 built: dict[int, tuple[Any, dict[str, Any]]],
                 live: Callable[[str, dict[str, Any]], Any],
                 epoch_metrics: Callable[[Any], dict[str, Any]],
                 final_metrics: Callable[[Any, Any, Any], dict[str, Any]],
                 report: Callable[[dict[str, Any], dict[str, Any] | None], None],
                 checkpoint_s: float) -> None:
        self.state, self.todo, self.ids, self.built = state, todo, ids, built
        self.live, self.epoch_metrics, self.final_metrics = live, epoch_metrics, final_metrics
        self.report, self.checkpoint_s = report, checkpoint_s
        # a member's W&B run is opened at its first epoch and finished with its result, so a
        # pack whose members run one after another holds one open run (with its system-metrics
        # sampler) at a time, as unpacked trials do, not K for the whole pack
        self.runs: dict[int, Any] = {}
        self.last: dict[int, Any] = {}
        self.clock = time.monotonic()

    def run_of(self, i: int) -> Any:
        if i not in self.runs:
            self.runs[i] = self.live(self.ids[i], self.built[i][1])
        return self.runs[i]

    def on_epoch(self, k: int, epoch_report: Any) -> None:
        i = self.todo[k]
        self.last[i] = epoch_report
        self.run_of(i).log(epoch_report.metrics, epoch_report.epoch)
        self.state.states[i] = epoch_report.checkpoint()
        # as an unpacked trial: the last epoch's metrics go out with the final report
        if epoch_report.epoch == epoch_report.total_epochs:
            return
        # the pack's checkpoint holds every member: saved at most every checkpoint_s, not with
        # every member's report (K reports of K states each round); a pack resumed from an
        # older checkpoint re-trains those epochs, as an unpacked trial killed mid-epoch does
        now = time.monotonic()
        keep = now - self.clock >= self.checkpoint_s
        if keep:
            self.clock = now
        self.report({**self.epoch_metrics(epoch_report), PACK_MEMBER: i},
                    self.state.saved() if keep else None)

    def on_result(self, k: int, result: Any) -> None:
        i = self.todo[k]
        final = {**self.final_metrics(result, self.last.get(i), self.built[i][0]),
                 PACK_MEMBER: i}
        self.run_of(i).finish(summary={**final, "status": result.status})
        self.state.done[i] = final
        self.state.states[i] = None
        self.report(final, self.state.saved())


def _run_members(cfgs: list[Any], resume: list[Any], run_fn: Any, extra: dict[str, Any],
                 on_epoch: Callable[[int, Any], None],
                 on_result: Callable[[int, Any], None]) -> None:
    """The members through ``run_pack``, or (a per-trial ``run_fn``: fault injection,
    benchmarks) one after another."""
    if run_fn is None:
        from pruning_core.packing import run_pack

        run_pack(cfgs, on_epoch=on_epoch, resume=resume, on_result=on_result, **extra)
        return
    for k, cfg in enumerate(cfgs):
        on_result(k, run_fn(cfg, on_epoch=lambda r, k=k: on_epoch(k, r), resume=resume[k]))


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
