"""The sweep's Optuna journal file, its ``fsync`` off the driver's event loop.

Optuna's ``JournalFileBackend.append_logs`` takes the file lock, appends and ``fsync``s, on
every ask, suggested parameter, user attribute and tell: five per trial here, each a few
milliseconds on a busy disk, all on Ray Tune's event loop. This backend appends under the same
lock (so several processes may still share the file) and leaves the ``fsync`` to
``sweeps.results.syncer`` (within a second, and at exit). A killed driver loses nothing: the
lines are in the kernel when ``append_logs`` returns; only a machine crash in that second
can lose study lines, which ``--resume`` already handles (``study.settle_orphans``, trials the
study was not told about).
"""

from __future__ import annotations

import json
from typing import Any

from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file

from sweeps.results.syncer import later


class SweepJournalBackend(JournalFileBackend):
    """``JournalFileBackend`` whose appends are synced by the background syncer."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with get_lock_file(self._lock):
            text = "\n".join(json.dumps(x, separators=(",", ":")) for x in logs) + "\n"
            with open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))
        later(self._file_path)
