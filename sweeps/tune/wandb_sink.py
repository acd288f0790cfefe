"""W&B at the end of a sweep, in the driver: every trial's run gets its Pareto flags and the
``<sweep>-summary`` run is written, by writer *processes* (:class:`WandbSink`).

Split from ``wandb_log.py`` (which holds the trials' live runs and the flags' computation);
``from sweeps.tune.wandb_log import WandbSink`` still works. Warnings go to the
``sweeps.tune.wandb_log`` logger, as before the split.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from sweeps.tune.driver_log import CUT_SHORT
from sweeps.tune.wandb_log import (
    SweepFlags,
    WandbTarget,
    _clean,
    _missing,
    log,
    resolve_mode,
    stored_rows,
    summary_values,
    sweep_flags,
)

_SUMMARY_COLUMNS = ("trial_id", "status", "test_accuracy", "sparsity", "flops", "params_kept",
                    "config.prune.criterion", "config.prune.sparsity", "pareto", "front_rank",
                    "error")

#: writer processes (W&B's client is CPU-bound per run; two keep up with a 2-core sweep)
WRITERS = 2


class WandbSink:
    """The driver's end-of-sweep W&B work, run by writer *processes*; every failure is logged,
    none raised.

    At the end of the sweep each trial's run (written live by its worker, :class:`TrialRun`)
    gets its Pareto flags, and the ``<sweep>-summary`` run is written. A W&B run costs tens of
    ms of CPU in the wandb client: in separate processes that overlaps with the driver.
    ``results``: the results directory the rows are read from (every trial of the sweep, also
    those recorded before a ``--resume``); without it, the rows the recorder passes.
    """

    def __init__(self, sweep: str, project: str, directory: str, mode: str = "offline",
                 group: str | None = None, entity: str | None = None,
                 space: dict[str, Any] | None = None, results: str | None = None) -> None:
        import multiprocessing as mp

        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_DISABLE_GIT", "true")
        self.target = WandbTarget(sweep, project, directory, resolve_mode(mode), group or sweep,
                                  entity)
        self.space = space or {}
        self.results = results
        self.objectives = [(o["metric"], o["mode"]) for o in self.space.get("objectives") or []]
        self.flags: SweepFlags | None = None
        self._n_jobs = 0
        ctx = mp.get_context("spawn")  # no fork of a driver holding Ray's threads
        self._jobs: Any = ctx.Queue()
        self._failures: Any = ctx.Value("i", 0)
        self._processes = [
            ctx.Process(target=_serve, args=(_Writer(self.target, self.space), self._jobs,
                                             self._failures),
                        name=f"prunetune-wandb-{i}", daemon=True)
            for i in range(WRITERS)
        ]
        for p in self._processes:
            p.start()

    @property
    def failures(self) -> int:
        return int(self._failures.value)

    # ------------------------------------------------------------------ public
    def sweep_finished(self, rows: list[dict[str, Any]]) -> None:
        """Queue the Pareto flags of every trial's run and the summary run (never raises)."""
        try:
            self._sweep_finished(rows)
        except Exception:  # W&B must never fail the sweep
            log.warning("W&B: could not queue the end-of-sweep updates", exc_info=True)

    def _sweep_finished(self, rows: list[dict[str, Any]]) -> None:
        if self.results is not None:
            try:
                rows = stored_rows(self.results)
            except Exception:  # the recorder's rows are the next best thing
                log.warning("W&B: could not read the results rows; using this run's",
                            exc_info=True)
        flags = SweepFlags(None, None)
        if self.objectives:
            try:
                flags = sweep_flags(rows, self.objectives)
            except Exception:
                log.warning("W&B: could not rank the trials (no Pareto flags)", exc_info=True)
        self.flags = flags
        existing = self.target.offline_runs() if self.target.mode == "offline" else None
        missing, cut_short = [], []
        for row in rows:
            trial_id = str(row["trial_id"])
            if existing is not None and self.target.run_id(trial_id) not in existing:
                # no run to flag: W&B failed in its worker, or the stop came first
                (cut_short if row.get("status") == "interrupted" else missing).append(trial_id)
                continue
            self._put(("flags", trial_id, {**summary_values(row), **flags.for_trial(trial_id)}))
        if missing:
            log.warning("W&B: no run for %d trial(s) (W&B failed in their workers): %s",
                        len(missing), ", ".join(missing))
        if cut_short:  # stopped before W&B started: the driver log only (driver_log.py)
            log.warning("W&B: no run for %d interrupted trial(s) (stopped before their W&B run "
                        "started; --resume runs them): %s", len(cut_short), ", ".join(cut_short),
                        extra={CUT_SHORT: True})
        table = [{**r, **flags.for_trial(str(r["trial_id"]))} for r in rows]
        self._put(("summary", table, {"hypervolume": flags.hypervolume,
                                      "reference_point": flags.reference_point}))

    def _put(self, job: tuple[Any, ...]) -> None:
        self._n_jobs += 1
        self._jobs.put(job)

    def close(self, timeout: float = 120.0) -> None:
        """Finish queued runs (waits at most ``timeout`` seconds, more for many runs)."""
        for _ in self._processes:
            self._jobs.put(None)
        deadline = time.monotonic() + max(timeout, 0.5 * self._n_jobs / WRITERS)
        for p in self._processes:
            p.join(max(0.0, deadline - time.monotonic()))
        if any(p.is_alive() for p in self._processes):
            log.warning("W&B logging still busy after %.0f s; some runs may be incomplete",
                        timeout)
            for p in self._processes:
                p.terminate()
        if self.failures:
            log.warning("%d W&B run(s) could not be written (the sweep went on)", self.failures)


#: how often a writer checks that the driver is still alive (where no death signal exists)
PARENT_POLL_S = 1.0
#: after the driver died: time left to close the current W&B run before the writer quits
EXIT_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> int:
    """Ask Linux to send ``sig`` to this process when its parent dies; returns the parent pid.

    ``daemon=True`` only helps on a clean exit: a SIGKILLed driver leaves daemon children
    running (and blocked forever on an empty queue). ``prctl(PR_SET_PDEATHSIG)`` closes that
    gap on Linux; callers also poll ``os.getppid()`` (other systems, and a parent that died
    before the ``prctl``).
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        except (OSError, AttributeError):  # no libc prctl: polling still covers it
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable", exc_info=True)
    return parent


def _exit_soon(*_: Any) -> None:
    """The driver died: finish the current run if it is quick, then leave (never linger)."""
    timer = threading.Timer(EXIT_GRACE_S, os._exit, args=(0,))
    timer.daemon = True  # still runs during atexit (wandb's teardown), never waited for
    timer.start()
    raise SystemExit(0)


def _serve(writer: _Writer, jobs: Any, failures: Any) -> None:
    """The writer process: run jobs until ``None`` or until the driver is gone; count and log
    failures, never raise."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _exit_soon)
    parent = die_with_parent(signal.SIGTERM)
    while True:
        if os.getppid() != parent:  # reparented: the driver is gone
            _exit_soon()
        try:
            job = jobs.get(timeout=PARENT_POLL_S)
        except queue.Empty:
            continue
        if job is None:
            return
        try:
            if job[0] == "flags":
                writer.flag_run(job[1], job[2])
            else:
                writer.summary_run(job[1], job[2])
        except Exception:  # W&B must never fail the sweep
            with failures.get_lock():
                failures.value += 1
            log.warning("W&B logging failed (the sweep goes on)", exc_info=True)


@dataclass(frozen=True)
class _Writer:
    """Writes the driver's W&B updates (picklable: it travels to the writer process)."""

    target: WandbTarget
    space: dict[str, Any]

    def flag_run(self, trial_id: str, summary: dict[str, Any]) -> None:
        """The trial's run, resumed: its final metrics and Pareto flags into the summary.

        Offline, a resumed run is a second ``offline-run-*-<id>`` directory holding the whole
        summary (``wandb sync`` the directories in time order: the glob's order)."""
        run = self.target.init(id=self.target.run_id(trial_id), resume="must",
                               requirements=False)
        try:
            run.summary.update(summary)
        finally:
            run.finish()

    def summary_run(self, rows: list[dict[str, Any]], extra: dict[str, Any]) -> None:
        import wandb

        run = self.target.init(name=f"{self.target.sweep}-summary",
                               id=f"{self.target.sweep}-summary", job_type="sweep-summary",
                               config=self.space)
        try:
            columns = [c for c in _SUMMARY_COLUMNS if any(c in r for r in rows)]
            table = wandb.Table(columns=columns,
                                data=[[_cell(r.get(c)) for c in columns] for r in rows])
            counts: dict[str, int] = {}
            for r in rows:
                counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
            run.log({"trials": table})
            run.summary.update(_clean({"n_trials": len(rows), **extra,
                                       **{f"n_{k}": v for k, v in counts.items()}}))
        finally:
            run.finish()


def _cell(v: Any) -> Any:
    """A table cell: numpy scalars as Python, NaN/NaT/NA as None."""
    if _missing(v):
        return None
    if hasattr(v, "item") and callable(v.item):
        return v.item()
    return v
