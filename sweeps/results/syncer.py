"""Durability off the sweep's hot path: ``fsync`` of files already written, in one thread.

A file written and closed (or renamed into place) is in the kernel: a killed process loses
nothing of it. ``fsync`` only guards against the *machine* going down before the kernel writes
it back, and it costs milliseconds each on a busy disk: on the driver's event loop, once per
row and per Optuna journal append, it was most of the sweep's overhead per trial. Here those
files are synced by one daemon thread, at most :data:`INTERVAL_S` after they were written, and
every pending one at :func:`flush` (end of a sweep) and at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import threading

#: the longest a written file waits for its ``fsync``
INTERVAL_S = 1.0

_lock = threading.Lock()
_wake = threading.Event()
_pending: set[str] = set()
_thread: threading.Thread | None = None


def _sync(paths: set[str]) -> None:
    for p in sorted(paths):
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:  # replaced or moved aside since: its successor is queued itself
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


def flush() -> None:
    """``fsync`` every file queued so far, now (in the caller's thread)."""
    with _lock:
        paths = set(_pending)
        _pending.clear()
    _sync(paths)


def _loop() -> None:
    while True:
        _wake.wait()
        _wake.clear()
        flush()
        threading.Event().wait(INTERVAL_S)


def later(path: str) -> None:
    """Queue ``path`` (written and closed) for an ``fsync`` within :data:`INTERVAL_S`."""
    global _thread
    with _lock:
        _pending.add(path)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, name="prunetune-fsync", daemon=True)
            _thread.start()
    _wake.set()


atexit.register(flush)
