"""The working directory shipped to Ray's workers: special files left out, a huge one refused."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from pruning_core.errors import ConfigError
from sweeps.tune import code_env
from sweeps.tune.code_env import EXCLUDES, runtime_env, special_files

from .conftest import cli, kill_session, write_space


def test_fifos_and_sockets_are_excluded_and_excluded_dirs_not_walked(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "nets.py").write_text("x = 1\n")
    os.mkfifo(tmp_path / "pkg" / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "s.sock"))
    (tmp_path / ".venv").mkdir()
    os.mkfifo(tmp_path / ".venv" / "hidden_pipe")  # inside an excluded folder: never seen
    try:
        assert sorted(special_files(tmp_path, list(EXCLUDES))) == ["/pkg/pipe", "/s.sock"]
        env = runtime_env(tmp_path)
        assert {"/pkg/pipe", "/s.sock"} <= set(env["excludes"])
    finally:
        sock.close()


def test_a_huge_working_dir_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(code_env, "MAX_ENTRIES", 5)
    for i in range(8):
        (tmp_path / f"f{i}.txt").write_text("")
    with pytest.raises(ConfigError, match=r"--working-dir .*more than 5 files and folders"):
        special_files(tmp_path, list(EXCLUDES))


@pytest.mark.slow
def test_a_sweep_started_next_to_a_fifo_finishes(tmp_path: Path) -> None:
    """Ray hashes every shipped file; opening a FIFO blocks forever (this hung a sweep)."""
    os.mkfifo(tmp_path / "a_pipe")
    space = write_space(tmp_path / "space.yaml", """\
        name: fifo
        objectives: [{metric: test_accuracy, mode: max}]
        sampler: {name: random, seed: 0}
        budget: {num_samples: 1}
        fixed:
          model: {name: mlp}
          data: {name: digits}
          train: {epochs: 1, device: cpu}
        storage: res
        wandb: {mode: disabled}
        """)
    proc = cli("sweep", str(space), "--num-cpus", "1", cwd=tmp_path)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        out = "timed out (hung)"
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 0, out
    assert "1/1 recorded" in out
