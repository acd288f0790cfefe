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
#: how often the watchdog looks at its parent (the driver) and the cluster's process tree
#: (env PRUNETUNE_WATCHDOG_INTERVAL_S; a test lengthens it to open a window on purpose)
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
    environment; a small watchdog process (``python -m sweeps.tune.ray_env``) follows those
    processes and their descendants while the driver lives (:class:`Cluster`), and when it dies
    stops exactly them (this cluster's, nothing else), plus any process of the driver's terminal
    session holding a file in the cluster's session directory, SIGTERM then SIGKILL. It starts
    before ``ray.init`` and leaves by itself once the cluster is shut down cleanly.
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


#: the directory holding the ``sweeps`` package (the watchdog imports it from there)
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def start_watchdog(token: str) -> subprocess.Popen[bytes]:
    """Start the watchdog of the processes marked with ``token`` (a child of this process)."""
    env = {k: v for k, v in os.environ.items() if k != FATE_TOKEN}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "sweeps.tune.ray_env", str(os.getpid()), token], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def marked_processes(token: str, parents: frozenset[int] = frozenset()) -> list[int]:
    """Pids of live processes (of this user) whose environment carries ``token``, or names one
    of ``parents`` as its raylet (Ray starts its dashboard and runtime-env agents with an
    environment of its own, ``RAY_RAYLET_PID=<pid>``, not the driver's).

    An environment is not proof of absence: Ray retitles its Python processes
    (``ray::DashboardAgent``, ``ray::IDLE``) by writing over the memory ``/proc/PID/environ``
    shows, so the token can vanish from a live process. The watchdog therefore also follows the
    process tree (:class:`Cluster`)."""
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


def process_table() -> dict[int, tuple[int, int, int]]:
    """``pid -> (parent pid, start time in clock ticks, session id)`` of every live, non-zombie
    process; the start time tells a process from a later one that reuses its pid."""
    table = {}
    for d in os.scandir("/proc"):
        if not d.name.isdigit():
            continue
        try:
            with open(f"/proc/{d.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":  # fields[0] is stat's 3rd field (state): ppid 4th, starttime 22nd
            table[int(d.name)] = (int(fields[1]), int(fields[19]), int(fields[3]))
    return table


#: command-line flags of Ray's processes that name the session directory (or its logs/)
_SESSION_FLAGS = (b"--session_dir=", b"--session-dir=", b"--log_dir=", b"--logs-dir=")


def _session_dirs(pid: int) -> set[str]:
    """Ray session directories named on ``pid``'s command line (GCS, raylet, monitors)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return set()
    out = set()
    for arg in args:
        for flag in _SESSION_FLAGS:
            if arg.startswith(flag):
                path = arg[len(flag):].decode(errors="replace").rstrip("/")
                out.add(path[:-len("/logs")] if path.endswith("/logs") else path)
    return {d for d in out if "/session_" in d}


def _holding(dirs: set[str], table: dict[int, tuple[int, int, int]],
             session: int) -> dict[int, int]:
    """Processes of the terminal ``session`` with a file open under one of ``dirs`` (every Ray
    process of a node writes its logs in the session directory: agents, workers, GCS, raylet;
    a ``tail -f`` on a log from another terminal is not in the session)."""
    prefixes = tuple(d + "/" for d in dirs)
    out = {}
    for pid, (_, start, sid) in table.items():
        if sid != session:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefixes):
                    out[pid] = start
                    break
            except OSError:
                continue
    return out


class Cluster:
    """The processes of one embedded cluster, followed while the driver lives.

    Members: processes carrying the token (or naming a member raylet in ``RAY_RAYLET_PID``),
    every descendant of a member, and, once the driver is gone, every process with a file open
    in the cluster's session directory. The environment alone is not enough: Ray retitles its
    agents and workers by writing over the memory ``/proc/PID/environ`` shows, and the raylet
    dies with the driver, so its agents are re-parented before anyone looks; the tree and the
    session directory still know them. Identity is (pid, start time)."""

    def __init__(self, token: str, driver: int = 0) -> None:
        self.token = token
        self.driver = driver
        self.known: dict[int, int] = {}  # pid -> start time
        self.session_dirs: set[str] = set()
        self._checked: set[tuple[int, int]] = set()  # the driver's children already looked at

    def refresh(self, with_environment: bool = True, orphans: bool = False) -> dict[int, int]:
        """Look again; returns the live members. Every time: the tree, and the environment of
        the driver's new children (the raylet is one); ``with_environment``: every process's
        environment; ``orphans``: processes holding files in the session directory."""
        table = process_table()
        me = os.getpid()
        live = {p: t for p, t in self.known.items() if table.get(p, (0, -1, 0))[1] == t}
        new = [p for p, (pp, t, _) in table.items()
               if pp == self.driver and (p, t) not in self._checked]
        self._checked.update((p, table[p][1]) for p in new)
        if with_environment:
            new = list(table)
        needles = [f"{FATE_TOKEN}={self.token}".encode(),
                   *(f"RAY_RAYLET_PID={pid}\0".encode() for pid in live)]
        for pid in new:
            if pid == me or pid in live:
                continue
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes() + b"\0"
            except OSError:
                continue
            if any(n in env for n in needles):
                live[pid] = table[pid][1]
                self.session_dirs |= _session_dirs(pid)
        if orphans and self.session_dirs:
            live.update({p: t for p, t in _holding(self.session_dirs, table, os.getsid(0)).items()
                         if p not in (me, self.driver)})
        children: dict[int, list[int]] = {}
        for pid, (ppid, *_) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = list(live)
        while todo:  # every descendant of a member is a member
            for child in children.get(todo.pop(), ()):
                if child not in live and child != me:
                    live[child] = table[child][1]
                    todo.append(child)
        self.known = live
        return live

    def signal(self, sig: int) -> None:
        for pid in self.known:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, grace: float = TERM_GRACE_S) -> int:
        """SIGTERM every member, SIGKILL those left after ``grace`` s; how many there were."""
        found = len(self.refresh(orphans=True))
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.known and time.monotonic() < deadline:
            time.sleep(0.1)
            self.refresh(with_environment=False)
        self.signal(signal.SIGKILL)
        return found


def stop_marked(token: str, grace: float = TERM_GRACE_S) -> int:
    """SIGTERM the processes carrying ``token`` and their descendants, SIGKILL those left after
    ``grace`` seconds. Returns how many there were."""
    return Cluster(token).stop(grace)


#: how long the watchdog keeps stopping respawned processes after the driver died
RESTOP_S = 20.0


def watch(driver: int, token: str) -> None:
    """The watchdog's loop: until the driver is gone (then stop the cluster's processes) or
    the cluster, once seen, is (a clean ``ray.shutdown``: then just leave)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    cluster = Cluster(token, driver)
    last_env, seen = 0.0, False
    interval = float(os.environ.get("PRUNETUNE_WATCHDOG_INTERVAL_S", WATCH_INTERVAL_S))
    while os.getppid() == driver:
        time.sleep(interval)
        # the tree and the driver's new children every turn (cheap: one stat per process),
        # every process's environment every few seconds
        env_due = time.monotonic() - last_env > ALIVE_CHECK_S
        members = cluster.refresh(with_environment=env_due)
        if env_due:
            if seen and not members and os.getppid() == driver:
                return  # shut down cleanly, the driver lives on
            seen, last_env = seen or bool(members), time.monotonic()
    # the raylet can start a new agent while its children are being stopped: repeat until the
    # cluster's processes stay gone (bounded)
    deadline = time.monotonic() + RESTOP_S
    while cluster.stop() and time.monotonic() < deadline:
        time.sleep(1.0)


if __name__ == "__main__":  # the watchdog process: python -m sweeps.tune.ray_env DRIVER_PID TOKEN
    watch(int(sys.argv[1]), sys.argv[2])
