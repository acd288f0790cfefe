"""The fuzz suite's runner and checks.

Inputs run **in-process** through the typer app (``CliRunner``: stdout and stderr captured
apart, as a terminal sees them), with the library's ``logging`` warnings sent to the captured
stderr exactly as ``prunetune``'s ``main()`` formats them. ``test_subprocess.py`` runs a
sample through the real ``prunetune`` executable to show the two agree.

Every input ends in one of two verdicts, checked by ``check``:

- **refused**: exit code 2, exactly one stderr line ``error: ...``, empty stdout, no traceback
  (an exception escaping the command is a traceback for a user, and fails the check);
- **accepted**: exit code 0, the command's normal output, no traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from typer.testing import CliRunner

from sweeps.cli import app

#: seconds one in-process command may take before it counts as a hang
HANG_S = 30


class Launched(Exception):
    """A ``sweep`` got past every pre-launch check (W&B writers or Ray were about to start);
    the fuzz suite stops it there: no real sweep runs for a fuzz input."""


class Hang(BaseException):
    """An in-process command ran longer than ``HANG_S`` (a BaseException: library code that
    catches ``Exception`` must not swallow it)."""


class _LiveStderr(logging.Handler):
    """``logging`` records written to whatever ``sys.stderr`` is now (the runner's capture),
    formatted like ``sweeps.cli.commands.main``'s ``basicConfig``."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")


@dataclass
class Outcome:
    args: list[str]
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None
    seconds: float

    @property
    def escaped(self) -> str:
        """The traceback of an exception that escaped the command ('' when none did)."""
        exc = self.exception
        if exc is None or isinstance(exc, SystemExit):
            return ""
        return "".join(traceback.format_exception(exc))

    def __str__(self) -> str:
        return (f"prunetune {' '.join(self.args)}\n  exit {self.code} in {self.seconds:.2f} s"
                f"\n  stdout={self.stdout[-600:]!r}\n  stderr={self.stderr[-1200:]!r}"
                + (f"\n  escaped: {' | '.join(self.escaped.splitlines()[-4:])}"
                   if self.escaped else ""))


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang("still running at its time limit")


def invoke(*args: str | Path, timeout: int = HANG_S) -> Outcome:
    """``prunetune ARGS`` in this process; a run past ``timeout`` seconds raises ``Hang``
    inside the command (reported as an escaped exception)."""
    argv = [str(a) for a in args]
    handler = _LiveStderr()
    root = logging.getLogger()
    root.addHandler(handler)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    start = time.perf_counter()
    try:
        result = CliRunner().invoke(app, argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        root.removeHandler(handler)
    return Outcome(argv, result.exit_code, result.stdout, result.stderr, result.exception,
                   time.perf_counter() - start)


def guarded(*args: str | Path, limit_s: float = 12, rss_mb: int = 3000) -> Outcome:
    """``prunetune ARGS`` as a real process, killed once it runs ``limit_s`` seconds or holds
    ``rss_mb`` MB: for inputs that hang or grow without bound (never run those in-process:
    one grew the test process to 24 GB before the alarm could stop it). A plain ``prunetune run``
    peaks near 0.9 GB here (torch alone is 0.5 GB; CI saw 1.21 GB under load), so the default
    leaves room for that and still stops unbounded growth long before the machine's 24 GB."""
    import subprocess

    exe = Path(sys.executable).parent / "prunetune"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "RAY_USAGE_STATS_ENABLED": "0"}
    start = time.perf_counter()
    p = subprocess.Popen([str(exe), *map(str, args)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    why = None
    while p.poll() is None:
        time.sleep(0.2)
        try:
            status = Path(f"/proc/{p.pid}/status").read_text()
            rss = int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
        except (OSError, StopIteration):
            rss = 0
        if time.perf_counter() - start > limit_s or rss > rss_mb * 1024:
            why = Hang(f"killed after {time.perf_counter() - start:.1f} s at {rss // 1024} MB "
                       "resident (a hang or unbounded growth)")
            os.killpg(p.pid, signal.SIGKILL)
            break
    out, err = p.communicate()
    return Outcome([str(a) for a in args], p.returncode, out, err, why,
                   time.perf_counter() - start)


def check_refused(out: Outcome, *needles: str) -> str:
    """Exit 2, one ``error:`` stderr line (holding every needle), empty stdout, no traceback."""
    assert not out.escaped, f"exception escaped:\n{out}"
    assert "Traceback" not in out.stderr + out.stdout, str(out)
    assert out.code == 2, f"expected exit 2:\n{out}"
    assert out.stdout == "", f"stdout not empty:\n{out}"
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line:\n{out}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in the error line:\n{out}"
    return lines[0]


def check_accepted(out: Outcome, *stdout_needles: str, warnings: int = 0) -> None:
    """Exit 0, the command's normal output (each needle on stdout), no traceback; stderr holds
    exactly ``warnings`` ``WARNING`` lines and nothing else."""
    assert not out.escaped, f"exception escaped:\n{out}"
    assert "Traceback" not in out.stderr + out.stdout, str(out)
    assert out.code == 0, f"expected exit 0:\n{out}"
    for needle in stdout_needles:
        assert needle in out.stdout, f"{needle!r} not on stdout:\n{out}"
    lines = out.stderr.splitlines()
    assert len(lines) == warnings and all(x.startswith("WARNING ") for x in lines), str(out)


def check(out: Outcome, valid: str | None, *needles: str) -> None:
    """The verdict a case expects: ``valid`` is ``None`` (refused, ``needles`` in the error
    line) or the reason the input is valid (accepted, ``needles`` on stdout)."""
    if valid is None:
        check_refused(out, *needles)
    else:
        check_accepted(out, *needles)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _fuzz_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each input runs in its own empty directory (relative ``storage:`` and outputs land
    there), with W&B offline, and with ``os.environ`` restored afterwards (``sweep`` sets Ray
    defaults in it)."""
    saved = dict(os.environ)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.chdir(tmp_path)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def _warm_up(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One tiny trial first: torch's first-use costs are not charged to a timed input."""
    cfg = tmp_path_factory.mktemp("fuzz_warm") / "c.yaml"
    cfg.write_bytes(tiny_config_bytes())
    check_accepted(invoke("run", cfg, timeout=120), "trial result")


@pytest.fixture
def no_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sweep`` stops with ``Launched`` where it would start W&B writer processes or Ray."""
    import sweeps.tune.launch as launch

    def stop(*args: Any, **kwargs: Any) -> Any:
        raise Launched("the sweep passed pre-launch validation")

    monkeypatch.setattr(launch, "WandbSink", stop)
    monkeypatch.setattr(launch, "init_ray", stop)


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small results directory (4 exportable ok trials) written once through the store."""
    from tests.security.conftest import write_exportable_results

    root = tmp_path_factory.mktemp("fuzz_results") / "results"
    write_exportable_results(root, [0.5, 0.7, 0.8, 0.9])
    return root


@pytest.fixture(scope="session")
def schedule_text(results_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A tuned schedule exported (in-process, the real ``schedule export``) from the results."""
    out = tmp_path_factory.mktemp("fuzz_schedule") / "tuned.yaml"
    res = invoke("schedule", "export", results_dir, "--best", "test_accuracy", "--out", out)
    check_accepted(res, "written to")
    return out.read_bytes()


@pytest.fixture(scope="session")
def masks_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A masks file written by ``prunetune run --masks`` for the tiny MLP of ``tiny_config``."""
    d = tmp_path_factory.mktemp("fuzz_masks")
    cfg = d / "c.yaml"
    cfg.write_bytes(tiny_config_bytes())
    out = d / "m.safetensors"
    res = invoke("run", cfg, "--masks", out)
    check_accepted(res, "trial result")
    return out.read_bytes()


#: a trial that runs in well under a second (the one tests/security uses, 0 epochs)
TINY: dict[str, Any] = {
    "seed": 0,
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "data": {"name": "digits", "batch_size": 64, "train_limit": 128, "test_limit": 64},
    "train": {"epochs": 0, "lr": 0.01, "device": "cpu"},
    "prune": {"criterion": "magnitude", "sparsity": 0.5, "schedule": "one_shot", "steps": 1},
}


def tiny_config_bytes() -> bytes:
    from .mutate import dump

    return dump(TINY)
