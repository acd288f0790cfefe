"""The sweep's dense cache on object storage (``storage: s3://...`` and other pyarrow URIs).

Entries are ``<results>/dense/<key>.pt`` objects (``torch.save``; read back with
``weights_only=True``). An object store has no file locks, so one writer per key across nodes
comes from a small named Ray actor the driver starts with the sweep (``start_lock_service``):
a trial that needs an entry nobody has written asks it for the key's lease; the others wait,
polling for the object. The writer renews its lease while it trains, so a writer that dies
frees the key after ``LEASE_S`` and another trial takes over.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from sweeps.results.store import join_path
from sweeps.tune.driver_actor import start_service, unreachable

log = logging.getLogger(__name__)

LEASE_S = 120.0
POLL_S = 1.0


def lock_service_name(sweep: str) -> str:
    return f"prunetune-dense-locks-{sweep}"


class _Leases:
    """Per-key leases: ``acquire`` is True for the one caller that may write the key."""

    def __init__(self) -> None:
        self.until: dict[str, float] = {}

    def acquire(self, key: str, owner: str) -> bool:
        now = time.time()
        held = self.until.get(key)
        if held is not None and held > now:
            return False
        self.until[key] = now + LEASE_S
        return True

    def renew(self, key: str) -> None:
        self.until[key] = time.time() + LEASE_S

    def release(self, key: str) -> None:
        self.until.pop(key, None)


def start_lock_service(sweep: str) -> Any:
    """The driver's lease actor for ``sweep`` (owned by the driver: it ends with the sweep; on
    the driver's node, restarted if it dies: ``driver_actor.start_service``)."""
    return start_service(_Leases, lock_service_name(sweep))


class ObjectStoreDenseCache:
    """``pruning_core.trials.dense_cache.DenseCache`` over a pyarrow filesystem URI."""

    def __init__(self, uri: str, sweep: str) -> None:
        self.uri = uri
        self.sweep = sweep

    def _path(self, key: str) -> tuple[Any, str]:
        import pyarrow.fs as pafs

        fs, base = pafs.FileSystem.from_uri(join_path(self.uri, f"{key}.pt"))
        return fs, base

    def _read(self, key: str) -> dict[str, Any] | None:
        import pyarrow.fs as pafs

        fs, path = self._path(key)
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as f:
            return torch.load(io.BytesIO(f.read()), weights_only=True)

    def _write(self, key: str, state: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        fs, path = self._path(key)
        with fs.open_output_stream(path) as out:  # an object appears whole when it closes
            out.write(buf.getvalue())

    def get_or_create(self, key: str, create: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        found = self._read(key)
        if found is not None:
            return found
        try:
            leases, found = self._acquire(key)
        except unreachable() as exc:  # the lease service is gone: train it here, unleased
            log.warning("dense network %s: the sweep's lease service is unreachable (%s); "
                        "training it here (another trial may train it too)",
                        key, type(exc).__name__)
            leases, found = None, None
        if found is not None:
            log.info("dense network %s: reusing the one another trial trained", key)
            return found
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE_S / 4):
                leases.renew.remote(key)

        if leases is not None:
            threading.Thread(target=renew, daemon=True).start()
        try:
            found = self._read(key)  # written between our first look and the lease
            if found is not None:
                return found
            log.info("dense network %s: training it once for the sweep", key)
            state = create()
            self._write(key, state)  # a whole object: a second (unleased) writer replaces
            return state             # it with the same content
        finally:
            stop.set()
            if leases is not None:
                leases.release.remote(key)

    def _acquire(self, key: str) -> tuple[Any, dict[str, Any] | None]:
        """The key's lease (the service's handle), or the entry another trial wrote meanwhile.
        Raises what :func:`driver_actor.unreachable` names when the service is gone."""
        import ray

        leases = ray.get_actor(lock_service_name(self.sweep))
        me = ray.get_runtime_context().get_worker_id()
        while not ray.get(leases.acquire.remote(key, me)):
            time.sleep(POLL_S)
            found = self._read(key)
            if found is not None:
                return None, found
        return leases, None
