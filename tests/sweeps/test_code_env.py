"""The working directory shipped to Ray's workers: special files left out, a huge one refused."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from pruning_core.base.errors import ConfigError
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


def test_the_working_dirs_own_copies_of_prunetune_are_not_shipped(tmp_path: Path) -> None:
    """A working directory holding a copy of prunetune's packages (an old checkout) must not
    shadow the driver's on the workers: the driver's go as ``py_modules``, the copies are
    excluded."""
    import pruning_core
    import sweeps

    for pkg in ("pruning_core", "sweeps"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("raise ImportError('a stale copy')\n")
    env = runtime_env(tmp_path)
    assert env["py_modules"] == [str(Path(pruning_core.__file__).resolve().parent),
                                 str(Path(sweeps.__file__).resolve().parent)]
    assert {"/pruning_core/", "/sweeps/"} <= set(env["excludes"])
    assert env["working_dir"] == str(tmp_path.resolve())


@pytest.mark.slow
def test_a_sweep_from_a_directory_with_a_stale_checkout_runs_the_drivers_code(
        tmp_path: Path) -> None:
    """Issue 8, mixed versions: ``prunetune sweep`` (the installed command) started next to
    copies of ``pruning_core/`` and ``sweeps/`` that fail on import; the workers import the
    driver's packages, so the trial runs."""
    import sys

    for pkg in ("pruning_core", "sweeps"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("raise ImportError('a stale copy')\n")
    space = write_space(tmp_path / "space.yaml", """\
        name: stale
        objectives: [{metric: test_accuracy, mode: max}]
        sampler: {name: random, seed: 0}
        budget: {num_samples: 1, max_failures: 0}
        fixed:
          model: {name: mlp}
          data: {name: digits}
          train: {epochs: 1, device: cpu}
        storage: res
        wandb: {mode: disabled}
        """)
    command = Path(sys.executable).with_name("prunetune")
    assert command.is_file(), "the package is installed (scripts/setup.sh: pip install -e .)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([str(command), "sweep", str(space), "--num-cpus", "1"], cwd=tmp_path,
                            env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=240)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 0, out
    assert "1/1 recorded (1 ok)" in out, out
