"""Checks before a sweep starts that turn Ray's silent waits into one-line errors.

- ``check_address``: ``--address host:port`` must answer a TCP connect within a few seconds
  (Ray otherwise retries for minutes against a port where nothing listens); ``connect_deadline``
  bounds the join itself (a port that answers but is no Ray GCS, or one Ray rewrites to the
  host's address, makes ``ray.init`` retry for minutes).
- ``check_cluster``: every trial's ``resources`` must fit on one node of the cluster Ray
  reports (``ray.nodes()``); otherwise Tune waits forever for resources that never come
  (``resources.gpu: 1`` on a machine without GPUs, ``cpu: 64`` on 2 cores, ``--num-cpus 0``).
  Autoscaling clusters grow after the check: ``PRUNETUNE_AUTOSCALING=1`` skips it there.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pruning_core.base.errors import ConfigError

if TYPE_CHECKING:
    from sweeps.tune.space import SearchSpace

#: seconds a TCP connect to ``--address`` may take
CONNECT_TIMEOUT_S = 5.0
#: set to 1 on an autoscaling cluster: nodes join after the sweep starts
AUTOSCALING = "PRUNETUNE_AUTOSCALING"
#: seconds ``ray.init`` may take to join an existing cluster (env override)
JOIN_TIMEOUT = "PRUNETUNE_JOIN_TIMEOUT_S"
DEFAULT_JOIN_TIMEOUT_S = 30.0


def parse_address(address: str) -> tuple[str, int] | None:
    """``host:port`` / ``ray://host:port`` / ``[::1]:port`` -> (host, port); ``auto`` -> None."""
    if address in ("auto", "local"):
        return None
    rest = address.removeprefix("ray://")
    if "://" in rest:
        raise ConfigError(f"--address {address}: use host:port, ray://host:port or auto")
    if rest.startswith("["):  # IPv6 literal
        host, _, port = rest[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address}: expected host:port (e.g. 127.0.0.1:6379), "
                          "ray://host:port or auto")
    return host, int(port)


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast when nothing answers at ``--address`` (bounded by ``timeout`` seconds)."""
    if address is None:
        return
    target = parse_address(address)
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except TimeoutError:
        raise ConfigError(f"--address {address}: no answer within {timeout:g} s; check the "
                          "host, the port (ray start --head prints it) and firewalls") from None
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ConfigError(f"--address {address}: cannot connect ({why.lower()}); is a Ray "
                          "cluster running there (ray start --head)?") from None


class _StderrHold:
    """Holds what is written to file descriptor 2 (Ray's C++ client logs each failed GCS
    connect there, past any Python logging setting) until ``release``: on success it is
    replayed, on failure dropped so that the one-line error stays the only line."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._buffer = tempfile.TemporaryFile()
        os.dup2(self._buffer.fileno(), 2)
        self._lock = threading.Lock()
        self._released = False

    def release(self, replay: bool) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
            sys.stderr.flush()
            os.dup2(self._saved, 2)
            os.close(self._saved)
            if replay:
                self._buffer.seek(0)
                held = self._buffer.read()
                if held:
                    os.write(2, held)
            self._buffer.close()


@contextmanager
def connect_deadline(address: str | None, seconds: float | None = None) -> Iterator[None]:
    """Around a run that joins ``address``: if Ray is not connected after ``seconds``, write one
    line to stderr and end the process with exit code 2.

    Ray has no public connect timeout; it retries a GCS that does not answer for minutes. The
    deadline only covers the join: once ``ray.is_initialized()``, it does nothing (and what Ray
    wrote to stderr while joining is passed on).
    """
    if address is None:
        yield
        return
    limit = seconds if seconds is not None else float(
        os.environ.get(JOIN_TIMEOUT, DEFAULT_JOIN_TIMEOUT_S))
    done = threading.Event()
    hold = _StderrHold()

    def watch() -> None:
        import ray

        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if done.wait(0.2):
                return
            if ray.is_initialized():
                hold.release(replay=True)
                return  # joined: the deadline is over
        hold.release(replay=False)
        os.write(2, f"error: --address {address}: no Ray cluster answered within {limit:g} s "
                    f"(is it a Ray GCS port? {JOIN_TIMEOUT} raises the limit)\n".encode())
        os._exit(2)  # ray.init cannot be interrupted from another thread

    threading.Thread(target=watch, name="prunetune-join-deadline", daemon=True).start()
    try:
        yield
    finally:
        done.set()
        hold.release(replay=False)  # an error ends the run: its own line is printed next


def _node_resources() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def check_cluster(space: SearchSpace, nodes: list[dict[str, Any]] | None = None) -> None:
    """Refuse per-trial ``resources`` that no node of the cluster can ever provide.

    ``nodes``: each alive node's resources (default: ``ray.nodes()`` of the connected Ray).
    """
    if os.environ.get(AUTOSCALING, "") in ("1", "true", "yes"):
        return
    nodes = _node_resources() if nodes is None else nodes
    need = {"cpu": float(space.resources.cpu), "gpu": float(space.resources.gpu)}
    for field, key in (("cpu", "CPU"), ("gpu", "GPU")):
        if need[field] <= 0:
            continue
        have = [float(n.get(key, 0.0)) for n in nodes]
        best = max(have, default=0.0)
        if need[field] > best:
            where = f" (the largest of its {len(have)} nodes has {best:g})" if len(have) > 1 \
                else ""
            raise ConfigError(
                f"resources.{field}: each trial asks for {need[field]:g} {key} but Ray's "
                f"cluster has {sum(have):g} {key}{where}; lower resources.{field}"
                + (" or give --num-cpus" if field == "cpu" else
                   " to 0 or join a cluster with GPUs (--address)")
            )
