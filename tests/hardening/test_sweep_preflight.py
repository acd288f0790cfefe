"""Issue 8, item 4: requests the cluster can never meet and unreachable addresses are one-line
errors within seconds, not waits forever (real CLI, real embedded Ray)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml

from pruning_core.base.errors import ConfigError
from sweeps.tune.preflight import check_address, check_cluster, parse_address
from sweeps.tune.space import SearchSpace, parse_space

from .conftest import assert_one_line_error, prunetune
from .test_bad_input import SPACE


def _space(**change: object) -> SearchSpace:
    return parse_space({**SPACE, **change})


def test_check_cluster_against_node_resources() -> None:
    one = [{"CPU": 2.0, "memory": 1e9}]
    check_cluster(_space(), one)
    with pytest.raises(ConfigError, match=r"^resources.gpu: each trial asks for 1 GPU but "
                                          r"Ray's cluster has 0 GPU; lower resources.gpu"):
        check_cluster(_space(resources={"gpu": 1}), one)
    with pytest.raises(ConfigError, match=r"^resources.cpu: .* 64 CPU .* has 2 CPU"):
        check_cluster(_space(resources={"cpu": 64}), one)
    with pytest.raises(ConfigError, match=r"has 0 CPU"):
        check_cluster(_space(), [{"CPU": 0.0}])
    # two nodes of 4 CPUs: 6 per trial fits on none, although the cluster has 8
    with pytest.raises(ConfigError, match=r"has 8 CPU \(the largest of its 2 nodes has 4\)"):
        check_cluster(_space(resources={"cpu": 6}), [{"CPU": 4.0}, {"CPU": 4.0}])
    check_cluster(_space(resources={"cpu": 4, "gpu": 0.5}), [{"CPU": 4.0, "GPU": 1.0}])


def test_autoscaling_clusters_skip_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRUNETUNE_AUTOSCALING", "1")
    check_cluster(_space(resources={"gpu": 8}), [{"CPU": 1.0}])


@pytest.mark.parametrize(("address", "parsed"), [
    ("auto", None), ("127.0.0.1:6379", ("127.0.0.1", 6379)),
    ("ray://head:10001", ("head", 10001)), ("[::1]:6379", ("::1", 6379)),
])
def test_parse_address(address: str, parsed: object) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["head", "head:", "head:0", "head:99999", "http://h:1"])
def test_parse_address_refuses(address: str) -> None:
    with pytest.raises(ConfigError, match="--address"):
        parse_address(address)


def test_check_address_is_bounded() -> None:
    with socket.socket() as listener:  # a port that answers: fine
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        check_address(f"127.0.0.1:{listener.getsockname()[1]}")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^--address 127.0.0.1:1: cannot connect "
                                          r"\(connection refused\)"):
        check_address("127.0.0.1:1")
    assert time.perf_counter() - start < 5


@pytest.mark.slow
@pytest.mark.parametrize(("change", "args", "needles"), [
    ({"resources": {"gpu": 1}}, [], ("resources.gpu", "0 GPU")),
    ({"resources": {"cpu": 64}}, ["--num-cpus", "2"], ("resources.cpu", "64 CPU", "2 CPU")),
    ({}, ["--address", "127.0.0.1:1"], ("--address 127.0.0.1:1", "connection refused")),
], ids=["gpu", "cpu64", "address"])
def test_sweep_fails_fast_with_one_line(tmp_path: Path, change: dict, args: list[str],
                                        needles: tuple[str, ...]) -> None:
    """Nothing but the error: the live table (already running) leaves no trace on stdout."""
    import torch

    if change.get("resources", {}).get("gpu") and torch.cuda.is_available():
        change = {"resources": {"gpu": torch.cuda.device_count() + 1}}
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({**SPACE, **change, "storage": "res"}))
    start = time.perf_counter()
    result = prunetune("sweep", str(space), *args, cwd=tmp_path, timeout=120)
    assert_one_line_error(result, *needles)
    assert time.perf_counter() - start < 60
    assert not list((tmp_path / "res").glob("trials/*.parquet"))


@pytest.mark.slow
def test_a_port_that_is_no_ray_cluster_fails_within_the_join_deadline(tmp_path: Path) -> None:
    """A TCP port that answers but is no GCS: Ray alone retries for minutes (and logs each try
    on stderr); the join deadline ends it with one line."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({**SPACE, "storage": "res"}))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        start = time.perf_counter()
        result = prunetune("sweep", str(space), "--address", address, cwd=tmp_path,
                           timeout=120, env={"PRUNETUNE_JOIN_TIMEOUT_S": "8"})
        took = time.perf_counter() - start
    assert_one_line_error(result, f"--address {address}", "no Ray cluster answered within 8 s")
    assert took < 45
