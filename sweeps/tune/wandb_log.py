"""W&B logging: one live run per trial, written by the trial's own worker, never failing it.

* **Trials** (:class:`TrialRun`, in the Ray worker): ``wandb.init`` when the trial starts (run id
  ``<sweep>-<trial_id>``, ``resume="allow"``: a retried or resumed trial continues the same run
  online), one ``run.log(..., step=epoch)`` per epoch as it is trained, the final metrics in the
  summary, ``finish()`` at the end (exit code 1 if the trial raised). Any W&B failure (init
  raising, a full disk, a killed wandb-core) is logged once and the trial goes on without W&B.
* **End of the sweep** (:class:`WandbSink`, in the driver, run by writer *processes*): every
  trial's run gets ``pareto`` (bool), ``front_rank`` (non-dominated sorting rank over the sweep's
  ``ok`` trials, 0 = the front; absent for a trial that is not ranked) and the sweep's
  ``hypervolume`` in its summary (``wandb.init(id=..., resume="must")`` + ``summary.update``),
  and one ``<sweep>-summary`` run holds the table of all trials.

Offline by default, under the results directory (``<results>/wandb/offline-run-*``; ``wandb sync
<results>/wandb/offline-run-*`` uploads later). ``online`` is used only when an API key is
present; otherwise it falls back to offline with a warning.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.tune.driver_log import CUT_SHORT

log = logging.getLogger(__name__)

_SUMMARY_COLUMNS = ("trial_id", "status", "test_accuracy", "sparsity", "flops", "params_kept",
                    "config.prune.criterion", "config.prune.sparsity", "pareto", "front_rank",
                    "error")
#: report keys that are not metrics (left out of a trial's W&B summary)
_NOT_SUMMARY = frozenset({"history", "final", "result_status", "result_error"})


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def resolve_mode(mode: str) -> str:
    """``online`` without a key -> ``offline`` (never prompt for a login)."""
    if mode == "online" and not _has_api_key():
        log.warning("wandb mode 'online' but no API key (WANDB_API_KEY / ~/.netrc): "
                    "logging offline instead")
        return "offline"
    return mode


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items()
            if v is not None and not (isinstance(v, float) and not math.isfinite(v))}


@dataclass(frozen=True)
class WandbTarget:
    """Where and how a sweep's W&B runs are written (picklable: it travels to the workers).

    ``dir``: the directory ``wandb.init(dir=...)`` gets; runs go under ``<dir>/wandb/``.
    """

    sweep: str
    project: str
    dir: str
    mode: str = "offline"
    group: str | None = None
    entity: str | None = None

    def run_id(self, trial_id: str) -> str:
        return f"{self.sweep}-{trial_id}"

    def init(self, *, stats: bool = False, requirements: bool = True, **kwargs: Any) -> Any:
        """``wandb.init`` with this target's project, group, dir and mode, quiet (no console
        capture, git or code saving); ``stats``: sample system metrics; ``requirements``: save
        the environment's ``requirements.txt`` (a scan of every installed package, ~0.1 s of
        CPU per run: the sweep's summary run saves it once, trial runs do not)."""
        import wandb

        Path(self.dir).mkdir(parents=True, exist_ok=True)
        return wandb.init(
            project=self.project, entity=self.entity, group=self.group or self.sweep,
            dir=self.dir, mode=self.mode, reinit="create_new",  # type: ignore[arg-type]
            settings=wandb.Settings(console="off", x_disable_stats=not stats, save_code=False,
                                    disable_git=True, silent=True,
                                    x_save_requirements=requirements),
            **kwargs,
        )

    def offline_runs(self) -> dict[str, list[Path]]:
        """Offline run directories by run id (``offline-run-<date>_<time>-<run id>``), oldest
        first."""
        out: dict[str, list[Path]] = {}
        if not Path(self.dir, "wandb").is_dir():
            return out
        for p in sorted(Path(self.dir, "wandb").glob("offline-run-*")):
            parts = p.name.split("-", 3)
            if len(parts) == 4:
                out.setdefault(parts[3], []).append(p)
        return out


def target_for(sweep: str, project: str, directory: str, mode: str, group: str | None = None,
               entity: str | None = None) -> WandbTarget | None:
    """The trials' W&B target, or None when W&B is ``disabled``."""
    if mode == "disabled":
        return None
    return WandbTarget(sweep, project, directory, resolve_mode(mode), group or sweep, entity)


class TrialRun:
    """One trial's live W&B run, in the worker that trains it; a no-op without a target.

    Every W&B call is guarded: the first failure is logged (once) and W&B is off for the rest
    of the trial; the wandb service of this worker is torn down, so the next trial on this
    (reused) worker starts a fresh one. Nothing here raises.
    """

    def __init__(self, target: WandbTarget | None, trial_id: str,
                 config: dict[str, Any] | None = None) -> None:
        self.trial_id = trial_id
        self.run: Any = None
        self.failed = False
        if target is None:
            return
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            self.run = target.init(stats=True, requirements=False,
                                   id=target.run_id(trial_id), name=trial_id,
                                   resume="allow", job_type="trial", config=config or {})
        except Exception:
            self._fail("start")

    @property
    def active(self) -> bool:
        return self.run is not None

    def log(self, metrics: dict[str, Any], epoch: int) -> None:
        """One epoch's metrics, at ``step=epoch``, as the epoch ends."""
        if self.run is None:
            return
        try:
            self.run.log(_clean({**metrics, "epoch": epoch}), step=int(epoch))
        except Exception:
            self._fail("log an epoch to")

    def finish(self, summary: dict[str, Any] | None = None, exit_code: int = 0) -> None:
        """The final metrics into the summary, then ``finish``."""
        run, self.run = self.run, None
        if run is None:
            return
        try:
            if summary:
                run.summary.update(summary_values(summary))
            run.finish(exit_code=exit_code)
        except Exception:
            self.run = run
            self._fail("finish")

    def _fail(self, what: str) -> None:
        if not self.failed:
            log.warning("W&B: could not %s the run of trial %s; the trial goes on without W&B",
                        what, self.trial_id, exc_info=True)
        self.failed = True
        run, self.run = self.run, None
        try:
            if run is not None:
                run.finish(exit_code=1)
        except Exception:  # the service is gone: nothing to finish
            pass
        try:
            import wandb

            wandb.teardown()  # a broken service is dropped: the next init starts a new one
        except Exception:
            pass


def summary_values(values: dict[str, Any]) -> dict[str, Any]:
    """A trial's report or row -> W&B summary values: finite scalars and strings, JSON text
    (per-layer values) decoded, no history, no config columns."""
    import json

    out: dict[str, Any] = {}
    for k, v in values.items():
        if k in _NOT_SUMMARY or k.startswith("config."):
            continue
        if isinstance(v, str) and v[:1] in "{[":
            try:
                v = json.loads(v)
            except ValueError:
                pass
        if isinstance(v, list | tuple) or getattr(v, "ndim", 0) or _missing(v):
            continue  # history, map columns (arrays), missing values
        if hasattr(v, "isoformat"):
            v = v.isoformat()
        elif hasattr(v, "item") and callable(v.item):  # numpy scalars
            v = v.item()
        out[k] = v
    return out


# --------------------------------------------------------------------------- pareto flags
def front_ranks(values: Any, modes: Sequence[str]) -> Any:
    """Non-dominated sorting: rank 0 = the Pareto front, rank 1 = the front once rank 0 is
    removed, ...; -1 for a row with a non-finite objective (it takes no part)."""
    import numpy as np

    from sweeps.results.pareto import pareto_mask

    v = np.asarray(values, dtype=np.float64).reshape(-1, len(modes))
    ranks = np.full(len(v), -1, dtype=np.int64)
    left = np.flatnonzero(np.isfinite(v).all(axis=1))
    rank = 0
    while len(left):
        mask = pareto_mask(v[left], modes)
        ranks[left[mask]] = rank
        left = left[~mask]
        rank += 1
    return ranks


@dataclass
class SweepFlags:
    """What the end of a sweep adds to each trial's run: ``pareto``, ``front_rank`` and the
    sweep's ``hypervolume`` (the front of its ``ok`` trials, as ``prunetune pareto`` finds it,
    with the same reference point: the worst value of each objective, 1 % of its range out)."""

    hypervolume: float | None
    reference_point: list[float] | None
    #: trial id -> front rank (absent: not ranked, i.e. not ``ok`` or a non-finite objective)
    ranks: dict[str, int] = field(default_factory=dict)

    def for_trial(self, trial_id: str) -> dict[str, Any]:
        rank = self.ranks.get(trial_id)
        out: dict[str, Any] = {"pareto": rank == 0}
        if rank is not None:
            out["front_rank"] = rank
        if self.hypervolume is not None:
            out["hypervolume"] = self.hypervolume
        return out


def sweep_flags(rows: Sequence[dict[str, Any]], objectives: Sequence[tuple[str, str]],
                ) -> SweepFlags:
    """Pareto flags of a sweep's rows for ``objectives`` ``[(metric, mode)]``: its ``ok`` rows
    take part (as in ``prunetune pareto``), every other row is unranked."""
    import numpy as np

    from sweeps.results.hypervolume import derive_reference, hypervolume

    modes = [m for _, m in objectives]
    ok = [r for r in rows if r.get("status") == "ok"]
    vals = np.array([[_number(r.get(c)) for c, _ in objectives] for r in ok],
                    dtype=np.float64).reshape(-1, len(modes))
    ranks = front_ranks(vals, modes)
    hv = ref = None
    if np.isfinite(vals).all(axis=1).any():
        ref_arr = derive_reference(vals, modes)
        hv = float(hypervolume(vals[ranks == 0], modes, ref_arr))
        ref = [float(x) for x in ref_arr]
    return SweepFlags(hv, ref, {str(r["trial_id"]): int(k)
                                for r, k in zip(ok, ranks, strict=True) if k >= 0})


def _number(v: Any) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def stored_rows(results: str) -> list[dict[str, Any]]:
    """Every trial's row in a results directory (one per trial, all statuses)."""
    from sweeps.results.pareto import Results

    with Results(results) as res:
        return res.query("SELECT * FROM trials_raw").to_dict("records")


# --------------------------------------------------------------------------- driver side
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


def _missing(v: Any) -> bool:
    """None, a non-finite float, or pandas' NaT / NA."""
    if v is None:
        return True
    if isinstance(v, float):
        return not math.isfinite(v)
    if getattr(v, "ndim", 0):
        return False
    if "pandas" in sys.modules and not isinstance(v, str | dict | list | tuple):
        import pandas as pd

        try:
            return bool(pd.isna(v))
        except (TypeError, ValueError):
            return False
    return False
