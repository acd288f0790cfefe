"""The environment of a benchmark's child process: this checkout first on ``PYTHONPATH``, then
whatever the caller had there (the device bundle's ``/tmp/site``, a user's own packages)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
