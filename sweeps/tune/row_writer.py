"""The recorder's rows, written by one background thread in batches (group commit).

A row's Parquet file costs ~4-5 ms of CPU (its Arrow table, the Parquet encoder, the rename),
and in the driver that CPU and the GIL are taken from Ray Tune's event loop: on a sweep of
short trials the rows were most of what prunetune added per trial. Here rows wait at most
:data:`FLUSH_S` (or until :data:`MAX_ROWS` are queued), then everything queued goes out in one
write: a lone row to its per-trial file as before, several to one part file
(``TrialFiles.write_rows``). A sweep of trials that take seconds writes one file per trial, as
before; one of short trials (or a pack whose members finish together) writes one file per batch.

What a killed driver loses is rows still queued: at most the last :data:`FLUSH_S` seconds of
finished trials. Ray Tune re-runs them on ``--resume``: the recorder flushes the queue whenever
Tune snapshots the experiment (``Recorder.get_state``), so a trial the snapshot lists as finished
has its row on disk, and one it does not is still unfinished to the resumed run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: the longest a recorded row waits before it is written
FLUSH_S = 0.5
#: rows that go out at once without waiting for FLUSH_S
MAX_ROWS = 1000


class RowWriter:
    """Calls ``write(rows)`` from one daemon thread with every row :meth:`put` since the last
    call, in order: once the oldest has waited ``flush_s`` (default :data:`FLUSH_S`),
    ``max_rows`` (default :data:`MAX_ROWS`) are queued, or
    :meth:`flush` asks. ``write`` handles its own errors (an exception is logged and the rows
    are dropped: the next batch still goes out)."""

    def __init__(self, write: Callable[[list[dict[str, Any]]], None],
                 flush_s: float | None = None, max_rows: int | None = None) -> None:
        self._write = write
        self.flush_s = FLUSH_S if flush_s is None else flush_s
        self.max_rows = MAX_ROWS if max_rows is None else max_rows
        self._cond = threading.Condition()
        self._rows: list[dict[str, Any]] = []
        self._oldest = 0.0  # monotonic time of the oldest queued row
        self._queued = 0  # rows put so far
        self._written = 0  # rows handed to ``write`` (and returned) so far
        self._urgent = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="prunetune-rows", daemon=True)
        self._thread.start()

    def put(self, row: dict[str, Any]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("RowWriter.put after close")
            first = not self._rows
            if first:
                self._oldest = time.monotonic()
            self._rows.append(row)
            self._queued += 1
            if first or len(self._rows) >= self.max_rows:  # start the clock, or go now
                self._cond.notify_all()

    def flush(self) -> None:
        """Return once every row put so far is written."""
        with self._cond:
            target = self._queued
            if self._written >= target:
                return
            self._urgent = True
            self._cond.notify_all()
            while self._written < target and self._thread.is_alive():
                self._cond.wait(0.1)

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        with self._cond:
            self._closed = True
            self._urgent = True
            self._cond.notify_all()
        self._thread.join()

    def _due(self) -> float | None:
        """Seconds until the queue is due (0: now); None: nothing queued."""
        if not self._rows:
            return None
        if self._urgent or self._closed or len(self._rows) >= self.max_rows:
            return 0.0
        return max(0.0, self.flush_s - (time.monotonic() - self._oldest))

    def _loop(self) -> None:
        while True:
            with self._cond:
                while (wait := self._due()) != 0.0:
                    if wait is None and self._closed:
                        return
                    self._cond.wait(wait)
                batch, self._rows = self._rows, []
                self._urgent = False
                upto = self._queued
            try:
                self._write(batch)
            except Exception:  # never lose the thread: later rows still go out
                log.exception("could not write %d results rows", len(batch))
            with self._cond:
                self._written = upto
                self._cond.notify_all()
