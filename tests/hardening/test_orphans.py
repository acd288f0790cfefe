"""Issue 8, item 3, the mechanisms one by one (fast, no Ray): a SIGKILLed driver leaves neither
its W&B writer processes (nor multiprocessing's resource tracker) nor the processes started
inside ``fate_shared()`` (the embedded Ray's) behind. The end-to-end version, 5 seeded random
SIGKILLs of a real ``prunetune sweep``, is in tests/sweeps/test_cli_resume.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from .conftest import REPO

MARK = "PRUNETUNE_ORPHAN_TEST"


def _marked(mark: str) -> list[tuple[int, str]]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if f"{MARK}={mark}".encode() not in (d / "environ").read_bytes():
                continue
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ")
                        .decode(errors="replace")[:80]))
        except OSError:
            continue
    return out


def _driver(code: str, mark: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), MARK: mark, "WANDB_MODE": "offline"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True,
                            stdout=subprocess.PIPE, start_new_session=True)


def _kill_and_count(proc: subprocess.Popen[str], mark: str, limit: float) -> float:
    """SIGKILL the driver once it said "ready"; seconds until none of its processes is left."""
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    before = _marked(mark)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    killed = time.monotonic()
    left = _marked(mark)
    while left and time.monotonic() - killed < limit:
        time.sleep(0.1)
        left = _marked(mark)
    for pid, _ in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"left after {limit} s: {left} (before the kill: {before})"
    return time.monotonic() - killed


def test_wandb_writers_and_resource_tracker_die_with_the_driver(tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    proc = _driver(f"""
        import time
        from sweeps.wandb_log import WandbSink
        sink = WandbSink("s", "p", {str(tmp_path)!r}, mode="offline")
        time.sleep(1.0)  # the writers are up, blocked on the empty queue
        print("ready", flush=True)
        time.sleep(600)
    """, mark)
    try:
        # driver + 2 writers + resource tracker before; nothing 10 s after the SIGKILL
        took = _kill_and_count(proc, mark, limit=10.0)
    finally:
        proc.kill()
    assert took < 10.0


def test_processes_started_inside_fate_shared_die_with_the_driver() -> None:
    """What ``ray.init`` starts inside ``fate_shared()`` (here: a process that ignores its
    parent's death, as Ray's agents do for minutes) is stopped by the watchdog."""
    mark = uuid.uuid4().hex
    proc = _driver("""
        import subprocess, sys, time
        from sweeps.ray_env import fate_shared
        with fate_shared():
            child = subprocess.Popen([sys.executable, "-c",
                                      "import signal, time; signal.signal(signal.SIGTERM, "
                                      "signal.SIG_IGN); time.sleep(600)"])
        time.sleep(0.5)
        print("ready", flush=True)
        time.sleep(600)
    """, mark)
    try:
        took = _kill_and_count(proc, mark, limit=15.0)  # needs SIGKILL after the grace
    finally:
        proc.kill()
    assert took < 15.0


def test_fate_shared_token_marks_only_what_starts_inside() -> None:
    from sweeps.ray_env import FATE_TOKEN, fate_shared, marked_processes

    assert FATE_TOKEN not in os.environ
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with fate_shared():
            token = os.environ[FATE_TOKEN]
            inside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        assert FATE_TOKEN not in os.environ  # restored: later children are not marked
        time.sleep(0.2)
        assert marked_processes(token) == [inside.pid]
    finally:
        outside.kill()
        inside.kill()
        inside.wait()
