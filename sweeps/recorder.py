"""The driver-side ``tune.Callback`` that turns finished trials into result rows.

It is the single writer of ``trials/<trial_id>.parquet`` (see ``store.py``) and feeds the W&B
sink. Statuses: ``ok`` / ``diverged`` (from the trainable's final report), ``stopped_early`` (the
scheduler stopped it: no final report), ``error`` (it raised more than ``max_failures`` times),
``interrupted`` (still running when the sweep ended: Ctrl-C, ``time_budget_s``; ``--resume``
re-runs it under the same id and its row is replaced).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from pruning_core.config import load_trial_config
from pruning_core.errors import ConfigError

from .space import SEARCH_KEY, trial_dict
from .store import _TYPES, TrialStore
from .trainable import FINAL_FLAG, RESULT_STATUS

if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from .wandb_log import WandbSink

log = logging.getLogger(__name__)

_METRIC_KEYS = [
    k
    for k in _TYPES
    if k
    not in {"sweep", "trial_id", "status", "error", "failures", "node_id", "node_ip", "hostname",
            "start_time", "end_time", "duration_s", "prunetune_version", "seed", "last_epoch"}
]
#: config fields kept as one JSON column rather than one column per key
_JSON_CONFIG = ("prune.allocation.layer_sparsity",)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prunetune")
    except PackageNotFoundError:
        return "unknown"


class Recorder(tune.Callback):
    """Writes one Parquet row per finished trial; optionally one W&B run per trial."""

    def __init__(self, sweep: str, store: TrialStore, base: dict[str, Any],
                 sink: WandbSink | None = None, num_samples: int | None = None) -> None:
        self.sweep = sweep
        self.num_samples = num_samples
        self.store = store
        self.base = base
        self.sink = sink
        self.version = _version()
        self.rows: dict[str, dict[str, Any]] = {}
        self._started: dict[str, float] = {}
        self._epochs: dict[str, list[dict[str, Any]]] = {}

    # Tune pickles run_config (and so its callbacks) into tuner.pkl; keep that light.
    def __getstate__(self) -> dict[str, Any]:
        return {"sweep": self.sweep, "store_root": self.store.root, "base": self.base,
                "num_samples": self.num_samples}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["sweep"], TrialStore(state["store_root"]), state["base"],  # type: ignore[misc]
                      num_samples=state.get("num_samples"))

    # ------------------------------------------------------------------ tune hooks
    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        self._started.setdefault(trial.trial_id, time.time())

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial,
                        result: dict[str, Any], **info: Any) -> None:
        if self.sink is not None and not result.get(FINAL_FLAG):
            keep = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
                    "sparsity")
            self._epochs.setdefault(trial.trial_id, []).append(
                {k: result[k] for k in keep if k in result}
            )

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial,
                          **info: Any) -> None:
        # Tune calls this for a trial that ended on its own or that a scheduler stopped; the
        # trials still running when the experiment stops (Ctrl-C) never come through here.
        self.record(trial)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial,
                       **info: Any) -> None:
        self.record(trial, error=_error_message(trial))

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        known = {t.trial_id for t in trials}
        # Rows of finished trials the (restored) experiment state knows, written if missing.
        # Those still running when the experiment stopped (Ctrl-C, time budget) were ended by
        # the stop, not by a scheduler: ``interrupted``, never ``stopped_early``.
        for t in trials:
            if t.status in ("TERMINATED", "ERROR") and not self.store.has(t.trial_id):
                self.record(t, error=_error_message(t) if t.status == "ERROR" else None,
                            interrupted=True)
        self._settle_unknown_rows(known)
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
        try:
            self.store.write(row)
        except OSError:
            log.exception("could not write the results row of trial %s", trial.trial_id)
        self.rows[trial.trial_id] = row
        if self.sink is not None:
            history = self._epochs.pop(trial.trial_id, [])
            if row.get("history"):
                history = json.loads(row["history"])
            self.sink.trial_finished(row, history)
        return row

    def build_row(self, trial: Trial, error: str | None = None,
                  interrupted: bool = False) -> dict[str, Any]:
        """The trial's row. ``interrupted``: the trial was still running when the experiment
        stopped, so a missing final report means ``interrupted`` (not ``stopped_early``)."""
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
        config, seed = self._config_columns(trial.config or {})
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
        row.update({k: result.get(k) for k in _METRIC_KEYS if k != "history"})
        row["history"] = result.get("history") if final else None
        for group in ("layer_sparsity", "similarity"):  # per-layer values: one column each
            if final and result.get(group):
                for name, s in json.loads(result[group]).items():
                    row[f"{group}.{name}"] = s
        row.update(config)
        return row

    def _config_columns(self, sampled: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
        data = trial_dict(self.base, sampled)
        try:
            resolved = load_trial_config(data).model_dump()
        except ConfigError:
            resolved = data
        cols = {f"config.{k}": v for k, v in _flatten(resolved).items()}
        for k, v in _flatten(sampled.get(SEARCH_KEY, {}), SEARCH_KEY).items():
            cols[f"config.{k}"] = v
        seed = resolved.get("seed")
        return cols, seed if isinstance(seed, int) else None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v and key not in _JSON_CONFIG:
            out.update(_flatten(v, key))
        elif isinstance(v, dict | list):
            out[key] = json.dumps(v) if v else None
        else:
            out[key] = v
    return out


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
    return lines[-1] if lines else "the trial failed (no error message recorded)"
