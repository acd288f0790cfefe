"""The sweep's service actors (sweeps/tune/driver_actor.py) on a real local Ray: on the driver's
node, restarted when killed, and callers that go on when the service is gone."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import torch

from sweeps.tune.dense_store import ObjectStoreDenseCache, lock_service_name, start_lock_service
from sweeps.tune.driver_actor import start_service
from sweeps.tune.stop_client import StopClient, StopSpec


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def bump(self) -> int:
        self.n += 1
        return self.n

    def pid(self) -> int:
        import os

        return os.getpid()

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def test_service_lives_on_the_driver_node_and_comes_back_when_killed(ray_local: None) -> None:
    import ray

    actor = start_service(Counter, "prunetune-test-counter")
    assert ray.get(actor.node.remote()) == ray.get_runtime_context().get_node_id()
    assert ray.get(actor.bump.remote()) == 1
    # the running one, not a second: same state
    assert ray.get(start_service(Counter, "prunetune-test-counter").bump.remote()) == 2
    before = ray.get(actor.pid.remote())
    ray.kill(actor, no_restart=False)  # as a node loss would: Ray restarts it (fresh state)
    deadline = time.time() + 60
    while ray.get(actor.pid.remote(), timeout=60) == before:  # ray.kill is asynchronous
        assert time.time() < deadline, "the killed service was not restarted within 60 s"
        time.sleep(0.1)
    assert ray.get(actor.bump.remote(), timeout=60) == 1
    ray.kill(actor)


def test_dense_cache_without_its_lease_service_trains_and_writes(
        tmp_path: Path, ray_local: None, caplog: pytest.LogCaptureFixture) -> None:
    cache = ObjectStoreDenseCache(tmp_path.as_uri(), "no-service-sweep")
    calls = []

    def create() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"w": torch.arange(3.0)}

    with caplog.at_level(logging.WARNING, logger="sweeps.tune.dense_store"):
        got = cache.get_or_create("k", create)
    assert torch.equal(got["w"], torch.arange(3.0)) and calls == [1]
    assert "lease service is unreachable (ValueError)" in caplog.text
    # written: the next trial reads it and trains nothing
    assert torch.equal(cache.get_or_create("k", create)["w"], torch.arange(3.0))
    assert calls == [1]


def test_dense_cache_with_its_lease_service_trains_once(tmp_path: Path, ray_local: None) -> None:
    import ray

    service = start_lock_service("leased-sweep")
    cache = ObjectStoreDenseCache(tmp_path.as_uri(), "leased-sweep")
    calls = []
    state = cache.get_or_create("k", lambda: calls.append(1) or {"w": torch.ones(2)})
    assert torch.equal(state["w"], torch.ones(2)) and calls == [1]
    assert ray.get(service.acquire.remote("k", "x"))  # released after writing
    ray.kill(ray.get_actor(lock_service_name("leased-sweep")))


def test_stop_client_without_its_board_goes_on(ray_local: None,
                                               caplog: pytest.LogCaptureFixture) -> None:
    client = StopClient(StopSpec("prunetune-stops-none-such", (1.0,), "t"), timeout_s=5)
    with caplog.at_level(logging.WARNING, logger="sweeps.tune.stop_client"):
        assert client.stopped("tok") is False
    assert "board is unreachable (ValueError)" in caplog.text
