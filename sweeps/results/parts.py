"""Compacted part files: their name prefix, and telling one from a per-trial file.

Below both :mod:`sweeps.results.store` (which writes and reads them) and
:mod:`sweeps.results.compaction` (which merges per-trial files into them), so compaction does not
import the store it is called from; ``store`` re-exports both names.
"""

from __future__ import annotations

from pathlib import Path

PART_PREFIX = "part-"


def is_part(path: str) -> bool:
    """A compacted file (many trials), as opposed to a per-trial file."""
    return Path(path).name.startswith(PART_PREFIX)
