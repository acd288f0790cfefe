"""A pack's live W&B runs, opened, logged and finished by one background thread of its worker.

A member's offline run costs ~0.1 s of ``wandb.init`` + ``finish`` (mostly waiting on the
worker's wandb-core service), as much as the member's own training on the demo space. A pack's
members train one after another in one process, so their runs are handed to this thread and
that time overlaps the next member's training (issue 20: "runs opened asynchronously"). Each
member still has its own run (same id, config, per-epoch history and summary as an unpacked
trial); the pack waits for the thread's queue to drain before it ends (:meth:`close`).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from sweeps.tune.wandb_log import TrialRun, WandbTarget

log = logging.getLogger(__name__)

#: the longest a pack waits for its runs' queue to drain when it ends (seconds)
CLOSE_WAIT_S = 300.0


class BackgroundRuns:
    """``open(trial_id, config)`` -> a run whose ``log`` / ``finish`` return at once; one
    thread does the W&B work in order. ``target`` None: plain no-op runs, no thread."""

    def __init__(self, target: WandbTarget | None, close_wait_s: float = CLOSE_WAIT_S) -> None:
        self.target, self.close_wait_s = target, close_wait_s
        self.queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.thread: threading.Thread | None = None

    def open(self, trial_id: str, config: dict[str, Any]) -> Any:
        if self.target is None:
            return TrialRun(None, trial_id)
        if self.thread is None:
            self.thread = threading.Thread(target=self._work, daemon=True,
                                           name="prunetune-wandb-runs")
            self.thread.start()
        return QueuedRun(self, trial_id, config)

    def put(self, work: Callable[[], None]) -> None:
        self.queue.put(work)

    def _work(self) -> None:
        while (work := self.queue.get()) is not None:
            try:
                work()
            except Exception:  # TrialRun never raises; this is the thread's last guard
                log.warning("W&B: a run's update failed; the pack goes on", exc_info=True)

    def close(self) -> None:
        """Wait (at most ``close_wait_s``) until every queued run update is done."""
        if self.thread is None:
            return
        self.queue.put(None)
        self.thread.join(self.close_wait_s)
        if self.thread.is_alive():
            log.warning("W&B: the pack's runs were still being written after %.0f s; "
                        "left to finish in the background", self.close_wait_s)
        self.thread = None


class QueuedRun:
    """A member's run as ``TrialRun`` (``log``, ``finish``), its work queued in order."""

    def __init__(self, runs: BackgroundRuns, trial_id: str, config: dict[str, Any]) -> None:
        self.runs, self.trial_id = runs, trial_id
        self.run: TrialRun | None = None
        runs.put(lambda: self._open(dict(config)))

    def _open(self, config: dict[str, Any]) -> None:
        self.run = TrialRun(self.runs.target, self.trial_id, config=config)

    def log(self, metrics: dict[str, Any], epoch: int) -> None:
        values = dict(metrics)
        self.runs.put(lambda: self.run.log(values, epoch) if self.run else None)

    def finish(self, summary: dict[str, Any] | None = None, exit_code: int = 0) -> None:
        values = None if summary is None else dict(summary)
        self.runs.put(lambda: self.run.finish(summary=values, exit_code=exit_code)
                      if self.run else None)
