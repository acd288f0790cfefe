"""Environment for joining a Ray cluster, set before ``ray`` is imported (it reads it once)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    ``ray_constants`` (already imported). Both are restored afterwards, so a later ``ray start``
    in this process's children is unaffected. ``PRUNETUNE_RAY_BIND_ALL=1`` (or an explicit
    setting of Ray's switch) opts out.
    """
    if os.environ.get(BIND_ALL, "") in ("1", "true", "yes") or LOOPBACK_SWITCH in os.environ:
        yield False
        return
    from ray._private import ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield True
    finally:
        os.environ.pop(LOOPBACK_SWITCH, None)
        ray_constants.ENABLE_RAY_CLUSTER = before
