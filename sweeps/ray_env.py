"""Environment for joining a Ray cluster, set before ``ray`` is imported (it reads it once),
and the watchdog that stops the embedded cluster's processes when the driver dies."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def client_auth_defaults() -> None:
    """Send the cluster's auth token when one is available (never generate one).

    Ray 2.60 clusters started with ``ray start`` require token auth, while clients default to
    ``RAY_AUTH_MODE=disabled``. An explicit ``RAY_AUTH_MODE`` is left alone.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def embedded_auth_defaults() -> None:
    """For the embedded cluster: token auth, as Ray 2.60 enables by default, said explicitly.

    Ray then skips its stderr warning about turning it on (a bad-input error must stay the only
    stderr line). An explicit ``RAY_AUTH_MODE`` is left alone, and so is a process that has
    imported Ray already (it read the mode at import; a different one now would not match).
    """
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


#: Ray's switch for multi-node mode; "0" makes it resolve the node address to loopback
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: set to 1 to let other machines reach (join) the embedded Ray
BIND_ALL = "PRUNETUNE_RAY_BIND_ALL"


@contextmanager
def loopback_only() -> Iterator[bool]:
    """Around ``ray.init``: the embedded Ray binds every port (GCS, raylet, workers, agents) to
    127.0.0.1. Yields whether loopback-only mode is on.

    By default Ray resolves ``127.0.0.1`` to the host's address and its GCS, raylet and worker
    servers listen on all interfaces. Ray's own single-machine switch keeps all of them on
    loopback: its subprocesses read it from the environment when they start, this driver from
    Ray's constants, read once when Ray was imported (``driver_cluster_switch``). Both are
    restored afterwards, so a later ``ray start`` in this process's children is unaffected.
    ``PRUNETUNE_RAY_BIND_ALL=1`` (or an explicit setting of Ray's switch) opts out.
    """
    if os.environ.get(BIND_ALL, "") in ("1", "true", "yes") or LOOPBACK_SWITCH in os.environ:
        yield False
        return
    os.environ[LOOPBACK_SWITCH] = "0"
    before = driver_cluster_switch(False)
    try:
        yield True
    finally:
        os.environ.pop(LOOPBACK_SWITCH, None)
        driver_cluster_switch(before)


def driver_cluster_switch(enabled: bool) -> bool:
    """Set this process's copy of Ray's multi-node switch; returns the previous value.

    Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, at import, into
    ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``; ``ray.util.get_node_ip_address()``
    (which ``ray.init`` uses for the node's address) answers loopback only while it is off. The
    driver has imported Ray long before ``ray.init``, and Ray has no public way to change it
    then, so this one function reaches into Ray's private constants.
    tests/sweeps/test_private_api.py fails loudly if Ray renames it or stops reading it.
    """
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    if not isinstance(before, bool):
        raise RuntimeError("Ray's ENABLE_RAY_CLUSTER is no longer a bool (Ray API change?)")
    ray_constants.ENABLE_RAY_CLUSTER = enabled
    return before


# ----------------------------------------------------------------------------- fate sharing
#: environment variable marking every process of one embedded cluster (inherited from ray.init)
FATE_TOKEN = "PRUNETUNE_EMBEDDED_RAY"
#: how often the watchdog looks at its parent (the driver)
WATCH_INTERVAL_S = 0.5
#: how often it checks that the cluster still exists (a clean ray.shutdown ends the watch)
ALIVE_CHECK_S = 2.0
#: SIGTERM first; SIGKILL whatever is left after this many seconds
TERM_GRACE_S = 2.0


@contextmanager
def fate_shared() -> Iterator[None]:
    """Around the embedded ``ray.init``: its processes die with the driver, even on SIGKILL.

    Ray's GCS and raylet share the driver's fate, but its dashboard and runtime-env agents
    outlive a SIGKILLed driver for minutes (they block reporting the raylet's death to the dead
    GCS), and so can workers. Every process ``ray.init`` starts inherits a fresh token in its
    environment; a small watchdog process (``python -m sweeps.ray_env``) waits for the driver
    to die and then stops exactly the processes carrying that token (this cluster's, nothing
    else), SIGTERM then SIGKILL. It starts before ``ray.init`` and leaves by itself once the
    cluster is shut down cleanly.
    """
    token = uuid.uuid4().hex
    try:  # before ray.init: a driver killed while Ray starts is covered too
        start_watchdog(token)
    except OSError:  # no watchdog: a killed driver may leave agents behind, nothing worse
        log.warning("could not start the embedded Ray's watchdog", exc_info=True)
    os.environ[FATE_TOKEN] = token
    try:
        yield
    finally:
        os.environ.pop(FATE_TOKEN, None)


def start_watchdog(token: str) -> subprocess.Popen[bytes]:
    """Start the watchdog of the processes marked with ``token`` (a child of this process)."""
    root = str(Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if k != FATE_TOKEN}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "sweeps.ray_env", str(os.getpid()), token], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def marked_processes(token: str, parents: frozenset[int] = frozenset()) -> list[int]:
    """Pids of live processes (of this user) whose environment carries ``token``, or names one
    of ``parents`` as its raylet (Ray starts its dashboard and runtime-env agents with an
    environment of its own, ``RAY_RAYLET_PID=<pid>``, not the driver's)."""
    needles = [f"{FATE_TOKEN}={token}".encode(),
               *(f"RAY_RAYLET_PID={pid}\0".encode() for pid in parents)]
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            env = (d / "environ").read_bytes() + b"\0"
        except OSError:  # gone, or another user's
            continue
        if any(n in env for n in needles):
            out.append(int(d.name))
    return out


def stop_marked(token: str, grace: float = TERM_GRACE_S,
                parents: frozenset[int] = frozenset()) -> int:
    """SIGTERM the processes carrying ``token`` (or started by one of the ``parents`` raylets),
    SIGKILL those left after ``grace`` seconds. Returns how many there were."""
    pids = marked_processes(token, parents)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while sig == signal.SIGTERM and time.monotonic() < deadline:
            if not marked_processes(token, parents):
                return len(pids)
            time.sleep(0.1)
        pids = marked_processes(token, parents)
    return len(pids)


#: how long the watchdog keeps stopping respawned processes after the driver died
RESTOP_S = 20.0


def watch(driver: int, token: str) -> None:
    """The watchdog's loop: until the driver is gone (then stop the cluster's processes) or
    the cluster, once seen, is (a clean ``ray.shutdown``: then just leave)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    last_check, seen = time.monotonic(), False
    known: set[int] = set()  # every process seen carrying the token (raylets among them)
    while os.getppid() == driver:
        time.sleep(WATCH_INTERVAL_S)
        if time.monotonic() - last_check > ALIVE_CHECK_S:
            marked = marked_processes(token)
            known.update(marked)
            if seen and not marked:
                return
            seen, last_check = seen or bool(marked), time.monotonic()
    known.update(marked_processes(token))
    # the raylet can start a new agent while its children are being stopped: repeat until the
    # cluster's processes stay gone for a second (bounded)
    deadline = time.monotonic() + RESTOP_S
    while stop_marked(token, parents=frozenset(known)) and time.monotonic() < deadline:
        time.sleep(1.0)


if __name__ == "__main__":  # the watchdog process: python -m sweeps.ray_env DRIVER_PID TOKEN
    watch(int(sys.argv[1]), sys.argv[2])
