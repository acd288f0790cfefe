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


def _kill_and_count(proc: subprocess.Popen[str], mark: str, limit: float,
                    at_least: int = 1) -> float:
    """SIGKILL the driver once it said "ready"; seconds until none of its processes is left."""
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    before = _marked(mark)
    assert len(before) >= at_least, before
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
        from sweeps.tune.wandb_sink import WandbSink
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
        from sweeps.tune.ray_env import fate_shared
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


def test_descendants_without_the_token_die_with_the_driver() -> None:
    """Ray retitles its agents and workers by writing over the memory ``/proc/PID/environ``
    shows, and starts agents with an environment of its own, so a live cluster process can
    lack the token (CI once found ``ray::DashboardAgent`` alive 30 s after the kill). Here a
    process started inside ``fate_shared()`` starts one with a bare environment (no token)
    that ignores SIGTERM: the watchdog follows the process tree and stops it too."""
    mark = uuid.uuid4().hex
    proc = _driver(f"""
        import subprocess, sys, time
        from sweeps.tune.ray_env import fate_shared
        grandchild = ("import signal, subprocess, sys, time; "
                      "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)")
        with fate_shared():
            child = subprocess.Popen([sys.executable, "-c",
                                      "import subprocess, sys, time; subprocess.Popen("
                                      "[sys.executable, '-c', sys.argv[1]], "
                                      "env={{'{MARK}': '{mark}'}}); time.sleep(600)", grandchild])
        time.sleep(1.5)  # the watchdog has looked at the tree since the grandchild started
        print("ready", flush=True)
        time.sleep(600)
    """, mark)
    try:
        # driver, watchdog, child and the bare grandchild before the kill; none 15 s after
        took = _kill_and_count(proc, mark, limit=15.0, at_least=4)
    finally:
        proc.kill()
    assert took < 15.0


def test_reparented_process_without_the_token_is_found_by_its_session_directory(
        tmp_path: Path) -> None:
    """The raylet dies with the driver (Ray sets PR_SET_PDEATHSIG), so an agent it started a
    moment before the kill is re-parented before the watchdog has seen it as the raylet's
    child, and Ray overwrote its environment. Here: a process started inside
    ``fate_shared()`` names a Ray session directory on its command line, dies with the driver,
    and started (inside the watchdog's blind window, lengthened to 3 s on purpose) one with a
    bare environment holding a log file there. The watchdog finds it by that file."""
    mark = uuid.uuid4().hex
    session = tmp_path / "session_2026-11-23_00-00-00_000000_1"
    (session / "logs").mkdir(parents=True)
    trigger, ready = tmp_path / "spawn", tmp_path / "ready"
    agent = textwrap.dedent(f"""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log = open({str(session / "logs" / "agent.log")!r}, "w")
        open({str(ready)!r}, "w").close()
        time.sleep(600)
    """)
    raylet = textwrap.dedent(f"""
        import ctypes, os, signal, subprocess, sys, time
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG, as Ray's raylet
        while not os.path.exists({str(trigger)!r}):
            time.sleep(0.02)
        subprocess.Popen([sys.executable, "-c", {agent!r}], env={{"{MARK}": "{mark}"}})
        time.sleep(600)
    """)
    proc = _driver(f"""
        import os, subprocess, sys, time
        os.environ["PRUNETUNE_WATCHDOG_INTERVAL_S"] = "3"
        from sweeps.tune.ray_env import fate_shared
        with fate_shared():
            raylet = subprocess.Popen([sys.executable, "-c", {raylet!r},
                                       "--session_dir={session}"])
        time.sleep(3.6)  # the watchdog's first look (at 3 s) saw the raylet, the next is at 6 s
        open({str(trigger)!r}, "w").close()
        while not os.path.exists({str(ready)!r}):
            time.sleep(0.02)
        print("ready", flush=True)
        time.sleep(600)
    """, mark)
    try:
        # driver, watchdog, raylet and the agent before the kill; none 15 s after
        took = _kill_and_count(proc, mark, limit=15.0, at_least=4)
    finally:
        proc.kill()
    assert took < 15.0


def test_fate_shared_token_marks_only_what_starts_inside() -> None:
    from sweeps.tune.ray_env import FATE_TOKEN, fate_shared, marked_processes

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


def test_the_watchdog_imports_prunetune_from_the_package_root() -> None:
    """The watchdog runs ``python -m sweeps.tune.ray_env`` with the package's root first on
    PYTHONPATH, so it starts where prunetune is not installed: here the base interpreter
    under the virtualenv, which has no prunetune (nor Ray: the watchdog needs only the
    standard library). It leaves by itself only once a cluster it saw is gone, so still running
    3 s later means it imported and is watching."""
    from sweeps.tune import ray_env

    assert (ray_env.PACKAGE_ROOT / "sweeps" / "tune" / "ray_env.py").is_file()
    base = getattr(sys, "_base_executable", sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            "from sweeps.tune.ray_env import start_watchdog; "
            "w = start_watchdog('no-such-token'); import time; time.sleep(3); "
            "print(w.poll()); w.kill()")
    done = subprocess.run([base, "-c", code], capture_output=True, text=True, env=env, cwd="/",
                          timeout=60)
    assert done.stdout.strip() == "None", done.stdout + done.stderr  # still running
