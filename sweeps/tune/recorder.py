"""The driver-side ``tune.Callback`` that turns finished trials into result rows.

It is the single writer of ``trials/<trial_id>.parquet`` (see ``store.py``) and feeds the W&B
sink. Statuses: ``ok`` / ``diverged`` (from the trainable's final report), ``stopped_early`` (the
scheduler stopped it: no final report), ``error`` (it raised more than ``max_failures`` times),
``interrupted`` (still running when the sweep ended: Ctrl-C, ``time_budget_s``; ``--resume``
re-runs it under the same id and its row is replaced).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from ray import tune

from sweeps.results.compaction import compact_quietly
from sweeps.results.schema import HISTORY_FIELDS, PER_LAYER, sweep_schema
from sweeps.results.schema import decoded as _decoded
from sweeps.results.store import _TYPES, TrialStore
from sweeps.tune.pack import (
    STOPPED_FLAG,
    member_id,
    member_ids,
    member_reports,
    members,
)
from sweeps.tune.row_writer import RowWriter
from sweeps.tune.schema_config import config_columns, space_config_types, types_of
from sweeps.tune.trainable import FINAL_FLAG, MEASURED, RESULT_STATUS

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from sweeps.tune.space import SearchSpace
    from sweeps.tune.wandb_sink import WandbSink

log = logging.getLogger(__name__)

_METRIC_KEYS = [
    *(k for k in _TYPES
      if k not in {"sweep", "trial_id", "status", "error", "failures", "node_id", "node_ip",
                   "hostname", "start_time", "end_time", "duration_s", "prunetune_version",
                   "seed", "last_epoch", "recorded_at"}),
    "collapsed_layers", "history",
]
#: what one epoch of ``history`` holds (the per-epoch report's keys)
_EPOCH_KEYS = tuple(name for name, _ in HISTORY_FIELDS)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prunetune")
    except PackageNotFoundError:
        return "unknown"


class Recorder(tune.Callback):
    """Writes one Parquet row per finished trial; optionally one W&B run per trial."""

    def __init__(self, sweep: str, store: TrialStore, base: dict[str, Any],
                 sink: WandbSink | None = None, num_samples: int | None = None,
                 space: SearchSpace | None = None, schema: pa.Schema | None = None,
                 background: bool = False) -> None:
        self.sweep = sweep
        self.num_samples = num_samples
        self.store = store
        self.base = base
        self.sink = sink
        self.version = _version()
        #: the sweep's declared row schema (sweeps/results/schema.py): config columns typed from the
        #: space (or, without one, from the fixed config); every file is written with it
        self.schema = schema if schema is not None else _row_schema(base, space)
        self.rows: dict[str, dict[str, Any]] = {}
        self._started: dict[str, float] = {}
        self._epochs: dict[str, list[dict[str, Any]]] = {}
        #: packs: each member's last report, and the members whose rows are written
        self._member_last: dict[str, dict[str, Any]] = {}
        self._member_done: set[str] = set()
        #: ``background``: rows are written off Tune's event loop, in batches, by one thread
        #: (``row_writer.py``); :meth:`drain` waits for them (the end of the sweep does, before
        #: it reads the rows), and every experiment snapshot flushes them (:meth:`get_state`)
        self.background = background
        self._writer: RowWriter | None = None

    # Tune pickles run_config (and so its callbacks) into tuner.pkl; keep that light.
    def __getstate__(self) -> dict[str, Any]:
        return {"sweep": self.sweep, "store_root": self.store.root, "base": self.base,
                "num_samples": self.num_samples,
                "schema": self.schema.serialize().to_pybytes()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        schema = pa.ipc.read_schema(pa.py_buffer(state["schema"])) if "schema" in state else None
        self.__init__(state["sweep"], TrialStore(state["store_root"]), state["base"],  # type: ignore[misc]
                      num_samples=state.get("num_samples"), schema=schema)

    # ------------------------------------------------------------------ tune hooks
    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        self._started.setdefault(trial.trial_id, time.time())

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict[str, Any], **info: Any) -> None:
        if members(trial.config) is not None:  # a pack's member reports (sweeps/tune/pack.py)
            for _, i, report in member_reports(trial.trial_id, result):
                self._member_result(trial, i, report)
            return
        if not result.get(FINAL_FLAG):  # the history a stopped trial keeps
            self._epochs.setdefault(trial.trial_id, []).append(
                {k: result[k] for k in _EPOCH_KEYS if k in result}
            )

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                          **info: Any) -> None:
        # Tune calls this for a trial that ended on its own or that a scheduler stopped; the
        # trials still running when the experiment stops (Ctrl-C) never come through here.
        if members(trial.config) is not None:
            self._record_members(trial)
            return
        self.record(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        if members(trial.config) is not None:
            self._record_members(trial, error=_error_message(trial))
            return
        self.record(trial, error=_error_message(trial))

    # ------------------------------------------------------------------ packs
    def _member(self, trial: Trial, i: int) -> Any:
        """Member ``i`` of a pack trial, as ``build_row`` reads a trial."""
        from types import SimpleNamespace

        mid = member_id(trial.trial_id, i)
        if trial.trial_id in self._started:
            self._started.setdefault(mid, self._started[trial.trial_id])
        return SimpleNamespace(trial_id=mid, config=members(trial.config)[i],  # type: ignore[index]
                               last_result=self._member_last.get(mid),
                               run_metadata=trial.run_metadata)

    def _member_result(self, trial: Trial, i: int, result: dict[str, Any]) -> None:
        mid = member_id(trial.trial_id, i)
        self._member_last[mid] = result
        # the member is done (its final, or the scheduler stopped it: stopped_early): its row
        if result.get(FINAL_FLAG) or result.get(STOPPED_FLAG):
            self.record(self._member(trial, i))
            self._member_done.add(mid)
        else:
            self._epochs.setdefault(mid, []).append(
                {k: result[k] for k in _EPOCH_KEYS if k in result})

    def _record_members(self, trial: Trial, error: str | None = None,
                        interrupted: bool = False, skip: frozenset[str] = frozenset()) -> None:
        """Rows of a pack's members not recorded yet (stopped, errored or interrupted)."""
        for i in range(len(members(trial.config) or [])):
            mid = member_id(trial.trial_id, i)
            if mid in self._member_done or mid in skip:
                continue
            self.record(self._member(trial, i), error=error, interrupted=interrupted)
            self._member_done.add(mid)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.drain()  # the rows written so far, before the store is read; the rows written
        self.background = False  # from here on (interrupted trials) are written at once
        known = {m for t in trials for m in member_ids(t.trial_id, t.config)}
        # Rows of finished trials the (restored) experiment state knows, written if missing.
        # Those still running when the experiment stopped (Ctrl-C, time budget) were ended by
        # the stop, not by a scheduler: ``interrupted``, never ``stopped_early``.
        have = self.store.trial_ids()
        for t in trials:
            if members(t.config) is not None:
                if t.status in ("TERMINATED", "ERROR"):
                    self._record_members(
                        t, error=_error_message(t) if t.status == "ERROR" else None,
                        interrupted=True, skip=frozenset(have))
                continue
            if t.status in ("TERMINATED", "ERROR") and t.trial_id not in have:
                self.record(t, error=_error_message(t) if t.status == "ERROR" else None,
                            interrupted=True)
        self._settle_unknown_rows(known)
        from sweeps.results.syncer import flush

        flush()  # every row's fsync, before compaction reads them
        compact_quietly(self.store)  # the rows are settled: merge the per-trial files
        if self.sink is not None:
            self.sink.sweep_finished(list(self.rows.values()))

    def _settle_unknown_rows(self, known: set[str]) -> None:
        """Rows of trials the (resumed) experiment does not know: they finished after the last
        experiment snapshot before a crash.

        Ray uploads its experiment state (the trial list) and the searcher's state as separate
        files, so a driver killed mid-upload can leave the searcher newer than the trial list.
        If the searcher had counted such a trial, the resumed run does not sample it again and
        its row is one of the ``num_samples``: keep it. If the searcher had not, the resumed run
        re-samples it under a new id and the old row is an extra: move it to
        ``trials_orphaned/``. Which case holds shows in the room the budget has left."""
        extra = sorted(self.store.trial_ids() - known)
        if not extra:
            return
        room = 0 if self.num_samples is None else max(0, self.num_samples - len(known))
        aside = extra[room:]
        if aside:
            self.store.move_aside(aside)
            log.warning("moved %d rows of trials unknown to the resumed experiment to %s",
                        len(aside), "trials_orphaned/")
        if len(aside) < len(extra):
            log.warning("kept %d rows of trials that finished after Ray's last experiment "
                        "snapshot (the searcher had counted them)", len(extra) - len(aside))

    # ------------------------------------------------------------------ rows
    def record(self, trial: Trial, error: str | None = None,
               interrupted: bool = False) -> dict[str, Any]:
        row = self.build_row(trial, error, interrupted)
        self._epochs.pop(trial.trial_id, None)
        if self.background:
            if self._writer is None:
                self._writer = RowWriter(self._write_rows)
            self._writer.put(row)
        else:
            self._write_rows([row])
        if self.sink is not None:  # for the sink's end-of-sweep flags (trials log W&B live)
            self.rows[trial.trial_id] = row
        return row

    def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        try:
            self.store.write_rows(rows, self.schema, sync_later=True)
        except OSError:
            log.exception("could not write the results rows of trials %s",
                          ", ".join(r["trial_id"] for r in rows))

    def drain(self) -> None:
        """Wait until every row recorded so far is written (``background``)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def get_state(self) -> None:
        """Tune snapshots the experiment (every 10 s or more, and at the end): the rows of the
        trials that snapshot lists as finished go to disk now, so a resumed sweep finds the
        row of every trial it will not run again. Nothing to restore: returns None."""
        if self._writer is not None:
            self._writer.flush()
        return None

    def build_row(self, trial: Trial, error: str | None = None,
                  interrupted: bool = False) -> dict[str, Any]:
        """The trial's row. ``interrupted``: the trial was still running when the experiment
        stopped, so a missing final report means ``interrupted`` (not ``stopped_early``).

        A trial without a final report (stopped early, interrupted) keeps what it measured:
        its last epoch's metrics and the history of the epochs it reported."""
        result = dict(trial.last_result or {})
        final = bool(result.get(FINAL_FLAG))
        if error is not None:
            status = "error"
        elif final:
            status = str(result.get(RESULT_STATUS, "ok"))
            error = result.get("result_error")
        elif interrupted:
            status = "interrupted"
        elif result:
            status = "stopped_early"
        else:
            status, error = "error", "the trial reported no result"
        now = time.time()
        started = self._started.get(trial.trial_id, now - float(result.get("time_total_s", 0.0)))
        config, seed = config_columns(self.base, trial.config or {})
        row: dict[str, Any] = {
            "sweep": self.sweep,
            "trial_id": trial.trial_id,
            "status": status,
            "error": error,
            "failures": int(getattr(trial.run_metadata, "num_failures", 0)),
            "node_id": result.get("node_id"),
            "node_ip": result.get("node_ip"),
            "hostname": result.get("hostname"),
            "start_time": dt.datetime.fromtimestamp(started, dt.UTC),
            "end_time": dt.datetime.fromtimestamp(now, dt.UTC),
            "duration_s": now - started,
            "prunetune_version": self.version,
            "seed": seed,
            "last_epoch": result.get("epoch"),
        }
        row.update({k: result.get(k) for k in _METRIC_KEYS})
        if not final:  # stopped or interrupted: the size it had reached when it last reported
            for k in _METRIC_KEYS:
                if _missing(row[k]) and not _missing(result.get(MEASURED + k)):
                    row[k] = result[MEASURED + k]
        row["history"] = _decoded(result.get("history")) if final else \
            _by_epoch(self._epochs.get(trial.trial_id, []))
        for group in PER_LAYER:  # per-layer values: one map each ({layer: value})
            row[group] = _decoded(result.get(group)) if final else None
        row.update(config)
        return row


def _row_schema(base: dict[str, Any], space: SearchSpace | None) -> pa.Schema:
    """The sweep's row schema: config columns typed from the space (every file the same)."""
    if space is None:
        types = types_of([config_columns(base, {})[0]])
        return sweep_schema({k: t or pa.string() for k, t in types.items()})
    return sweep_schema(space_config_types(space, base),
                        objectives=[{"metric": o.metric, "mode": o.mode} for o in space.objectives],
                        space=space.model_dump(mode="json"))



def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _by_epoch(epochs: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Reported epochs, the last report of each epoch (a restored trial may repeat some)."""
    out = {e.get("epoch"): e for e in epochs}
    return [out[k] for k in sorted(out, key=lambda e: -1 if e is None else e)] or None


def _error_message(trial: Trial) -> str:
    """The last line of the trial's error (``ValueError: ...``), or a generic note.

    Read from the trial's *local* error file first: ``Trial.get_error`` reads the copy in the
    storage path, which Ray syncs asynchronously and may not exist yet when the callback runs.
    """
    text = ""
    try:
        local = getattr(trial, "error_file", None)
        if local and Path(local).is_file():
            text = Path(local).read_text()
        if not text:
            err = trial.get_error()
            text = str(err) if err is not None else ""
    except Exception:  # the error file may be gone; the message is best effort
        text = ""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return with_fix(lines[-1]) if lines else "the trial failed (no error message recorded)"


#: Ray errors whose cure is a setting of the space: a phrase of Ray's message -> what to do
ERROR_FIXES: dict[str, str] = {
    # ray/tune/trainable/trainable.py, ``Trainable.restore``: a resumed trial whose checkpoint
    # Ray deleted (``num_to_keep``) before its experiment snapshot named a newer one
    "Could not recover from checkpoint as it does not exist":
        "set budget.keep_checkpoints: null in a sweep you may kill; Ray deletes old checkpoints "
        "before its snapshot names the new one, and a driver killed in between resumes from a "
        "deleted one (docs/sweeps.md, Reliability)",
}


def with_fix(line: str) -> str:
    """``line`` with the fix for it appended, where it is a Ray error in ``ERROR_FIXES``."""
    for phrase, hint in ERROR_FIXES.items():
        if phrase in line:
            return f"{line} (fix: {hint})"
    return line
