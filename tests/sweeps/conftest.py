"""Fixtures for sweep tests: a real local Ray per module, and process cleanup by session id."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A real local Ray (2 CPUs) shared by the sweeps of one test module."""
    import ray

    from sweeps.tune.launch import init_ray

    init_ray(None, num_cpus=2)
    yield
    ray.shutdown()


def write_space(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def kill_session(sid: int) -> None:
    """SIGKILL every process in the session ``sid`` (one we started with start_new_session)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, s = (int(x) for x in line.split())
        if s == sid and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None,
        **kw: object) -> subprocess.Popen[str]:
    """Start ``python -m sweeps.cli ARGS`` in its own session (so it can be cleaned up)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true", **(env_extra or {})}
    return subprocess.Popen([PY, "-m", "sweeps.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, **kw)  # type: ignore[call-overload]


def offline_run_id(dirname: str) -> str:
    """The W&B run id of an offline run directory ``offline-run-<date>_<time>-<id>[-N]``
    (``-N``: W&B reopened the id within the same second; a small counter). A trial id is 8 hex
    digits, which can all be decimal: only a suffix of 1 to 3 digits is W&B's."""
    return re.sub(r"-\d{1,3}$", "", dirname.split("-", 3)[3])
