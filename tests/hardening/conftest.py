"""Helpers for the bad-input suite: every refusal is exit 2, one stderr line, empty stdout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: a directory even root cannot create files in (sysfs)
UNWRITABLE_DIR = Path("/sys")


def prunetune(*args: str, cwd: Path = REPO, timeout: float = 120,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess (as a user runs it)."""
    full = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline",
            "WANDB_SILENT": "true", "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: Any, *needles: str) -> str:
    """Exit code 2, exactly one stderr line starting ``error:``, nothing on stdout, no
    traceback; the line contains every needle. Works for ``CompletedProcess`` and
    ``CliRunner`` results."""
    code = getattr(result, "returncode", getattr(result, "exit_code", None))
    stderr, stdout = result.stderr, result.stdout
    assert "Traceback" not in stderr + stdout, stderr
    assert code == 2, f"exit {code}; stdout={stdout!r} stderr={stderr!r}"
    assert stdout == "", stdout
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]
