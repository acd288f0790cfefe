"""W&B logging: one run per trial and a summary run per sweep, never failing the sweep.

Runs are written by a separate writer process fed from the driver-side recorder (a W&B run
costs tens of milliseconds of CPU; neither Tune's event loop nor the GIL should wait for it).
Offline by default, under the results directory (``wandb sync <results>/wandb/offline-run-*``
uploads later). ``online`` is used only when an API key is present; otherwise it falls back to
offline with a warning.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SUMMARY_COLUMNS = ("trial_id", "status", "test_accuracy", "sparsity", "flops", "params_kept",
                    "config.prune.criterion", "config.prune.sparsity", "error")


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


#: writer processes (W&B's client is CPU-bound per run; two keep up with a 2-core sweep)
WRITERS = 2


class WandbSink:
    """W&B jobs run by one writer *process*; every failure is logged, none raised.

    A W&B run costs ~70 ms of CPU in the wandb client. In a thread of the driver that time is
    taken from Tune's event loop (the GIL); in separate processes it overlaps with the sweep:
    on 2 cores, 200 no-op trials went from 0.118 to 0.080 s/trial (benchmarks/RESULTS.md).
    """

    def __init__(self, sweep: str, project: str, directory: str, mode: str = "offline",
                 group: str | None = None, entity: str | None = None,
                 space: dict[str, Any] | None = None) -> None:
        import multiprocessing as mp

        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_DISABLE_GIT", "true")
        self.writer = _Writer(sweep, project, directory, resolve_mode(mode), group or sweep,
                              entity, space or {})
        ctx = mp.get_context("spawn")  # no fork of a driver holding Ray's threads
        self._jobs: Any = ctx.Queue()
        self._failures: Any = ctx.Value("i", 0)
        self._processes = [
            ctx.Process(target=_serve, args=(self.writer, self._jobs, self._failures),
                        name=f"prunetune-wandb-{i}", daemon=True)
            for i in range(WRITERS)
        ]
        for p in self._processes:
            p.start()

    @property
    def failures(self) -> int:
        return int(self._failures.value)

    # ------------------------------------------------------------------ public
    def trial_finished(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        self._jobs.put(("trial", dict(row), list(history)))

    def sweep_finished(self, rows: list[dict[str, Any]]) -> None:
        self._jobs.put(("summary", list(rows)))

    def close(self, timeout: float = 120.0) -> None:
        """Finish queued runs (waits at most ``timeout`` seconds)."""
        for _ in self._processes:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
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
            if job[0] == "trial":
                writer.trial_run(job[1], job[2])
            else:
                writer.summary_run(job[1])
        except Exception:  # W&B must never fail the sweep
            with failures.get_lock():
                failures.value += 1
            log.warning("W&B logging failed (the sweep goes on)", exc_info=True)


@dataclass(frozen=True)
class _Writer:
    """Writes W&B runs (picklable: it travels to the writer process)."""

    sweep: str
    project: str
    dir: str
    mode: str
    group: str
    entity: str | None
    space: dict[str, Any]

    def _init(self, **kwargs: Any) -> Any:
        import wandb

        Path(self.dir).mkdir(parents=True, exist_ok=True)
        return wandb.init(
            project=self.project, entity=self.entity, group=self.group, dir=self.dir,
            mode=self.mode, reinit="create_new",
            settings=wandb.Settings(console="off", x_disable_stats=True, save_code=False,
                                    disable_git=True, silent=True),
            **kwargs,
        )

    def trial_run(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        config = {k[len("config."):]: v for k, v in row.items() if k.startswith("config.")}
        run = self._init(name=row["trial_id"], id=f"{self.sweep}-{row['trial_id']}",
                         job_type="trial", config=config, tags=[row["status"]])
        try:
            for h in history:
                step = h.get("epoch")
                run.log(_clean(h), step=int(step) if step is not None else None)
            summary = {k: v for k, v in row.items()
                       if not k.startswith("config.") and k not in ("history",)}
            summary = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                       for k, v in _clean(summary).items()}
            run.summary.update(summary)
        finally:
            run.finish()

    def summary_run(self, rows: list[dict[str, Any]]) -> None:
        import wandb

        run = self._init(name=f"{self.sweep}-summary", id=f"{self.sweep}-summary",
                         job_type="sweep-summary", config=self.space)
        try:
            columns = [c for c in _SUMMARY_COLUMNS if any(c in r for r in rows)]
            table = wandb.Table(columns=columns,
                                data=[[r.get(c) for c in columns] for r in rows])
            counts: dict[str, int] = {}
            for r in rows:
                counts[r["status"]] = counts.get(r["status"], 0) + 1
            run.log({"trials": table})
            run.summary.update({"n_trials": len(rows),
                                **{f"n_{k}": v for k, v in counts.items()}})
        finally:
            run.finish()
