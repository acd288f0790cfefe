"""W&B logging: one run per trial and a summary run per sweep, never failing the sweep.

Runs are written from a background thread in the driver (a W&B run costs tens of milliseconds
to open and close; Tune's event loop should not wait for it). Offline by default, under the
results directory (``wandb sync <results>/wandb/offline-run-*`` uploads later). ``online`` is used
only when an API key is present; otherwise it falls back to offline with a warning.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable
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


class WandbSink:
    """Queue of W&B jobs run by one daemon thread; every failure is logged, none raised."""

    def __init__(self, sweep: str, project: str, directory: str, mode: str = "offline",
                 group: str | None = None, entity: str | None = None,
                 space: dict[str, Any] | None = None) -> None:
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_DISABLE_GIT", "true")
        self.sweep = sweep
        self.project = project
        self.entity = entity
        self.group = group or sweep
        self.mode = resolve_mode(mode)
        self.dir = directory
        self.space = space or {}
        self.failures = 0
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="wandb-sink", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    def trial_finished(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
        self._jobs.put(lambda: self._trial_run(dict(row), list(history)))

    def sweep_finished(self, rows: list[dict[str, Any]]) -> None:
        self._jobs.put(lambda: self._summary_run(list(rows)))

    def close(self, timeout: float = 120.0) -> None:
        """Finish queued runs (waits at most ``timeout`` seconds)."""
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("W&B logging still busy after %.0f s; some runs may be incomplete",
                        timeout)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # W&B must never fail the sweep
                self.failures += 1
                log.warning("W&B logging failed (the sweep goes on)", exc_info=True)

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

    def _trial_run(self, row: dict[str, Any], history: list[dict[str, Any]]) -> None:
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

    def _summary_run(self, rows: list[dict[str, Any]]) -> None:
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
