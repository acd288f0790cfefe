"""Sweep results on an S3 URI (``storage: s3://...``), served by a local S3-compatible server
(moto, on 127.0.0.1): Ray's experiment state and the Parquet rows both go through pyarrow's S3
filesystem, exactly as against AWS."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeps.results.store import TrialStore, join_path
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto keeps its buckets per process: start every test from an empty store
    urllib.request.urlopen(urllib.request.Request(f"http://{host}:{port}/moto-api/reset",
                                                  method="POST")).read()
    boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="sweeps")
    yield f"s3://sweeps/runs/s3demo?endpoint_override={host}:{port}&scheme=http&region=us-east-1"
    server.stop()


def test_sweep_writes_state_and_rows_to_s3(s3_uri: str, ray_local: None) -> None:
    space = parse_space({
        "name": "s3demo", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "sampler": {"name": "random", "seed": 0}, "budget": {"num_samples": 2,
                                                              "max_concurrent": 2},
        "fixed": {"model": {"name": "mlp", "options": {"hidden": [16]}},
                  "data": {"name": "digits", "train_limit": 200}, "train": {"epochs": 2}},
        "params": {"prune.sparsity": {"type": "float", "low": 0.5, "high": 0.9}},
        "storage": s3_uri, "wandb": {"mode": "disabled"}})
    out = run_sweep(space)
    assert out.rows == 2 and out.counts == {"ok": 2}
    assert out.experiment_path == join_path(s3_uri, "tune")
    df = TrialStore(s3_uri).dataframe()
    assert sorted(df["status"]) == ["ok", "ok"] and df["trial_id"].is_unique
    assert (df["test_accuracy"] > 0).all()
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(s3_uri)
    names = {i.base_name for i in fs.get_file_info(pafs.FileSelector(base, recursive=True))}
    assert "tuner.pkl" in names  # Ray's experiment state is on S3 too (resumable from there)


def test_join_path_keeps_the_query_last() -> None:
    assert join_path("s3://b/x?a=1&b=2", "tune") == "s3://b/x/tune?a=1&b=2"
    assert join_path("/tmp/res/", "tune", "x") == "/tmp/res/tune/x"


def test_pareto_and_query_read_results_on_s3(s3_uri: str, tmp_path: Path) -> None:
    from sweeps.results.pareto import Results, load_results, pareto_front

    store = TrialStore(s3_uri)
    for i, (acc, sp) in enumerate([(0.9, 0.5), (0.8, 0.9), (0.7, 0.6)]):
        store.write({"trial_id": f"t{i}", "status": "ok", "test_accuracy": acc, "sparsity": sp,
                     "config.prune.criterion": "snip"})
    local = tmp_path / "local"
    TrialStore(str(local)).write({"trial_id": "l0", "status": "ok", "test_accuracy": 0.95,
                                  "sparsity": 0.4, "config.prune.criterion": "synflow"})
    df = load_results([s3_uri, str(local)])
    assert sorted(df["trial_id"]) == ["l0", "t0", "t1", "t2"]
    front = pareto_front(df, ["test_accuracy:max", "sparsity:max"])
    assert sorted(front["trial_id"]) == ["l0", "t0", "t1"]
    with Results([s3_uri]) as res:
        out = res.query("SELECT criterion, count(*) AS n FROM trials GROUP BY 1")
    assert out.to_dict("records") == [{"criterion": "snip", "n": 3}]


def test_dense_network_is_trained_once_under_s3_storage(s3_uri: str, ray_local: None) -> None:
    import pyarrow.fs as pafs

    space = parse_space({
        "name": "s3dense", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "sampler": {"name": "grid", "seed": 0},
        "budget": {"num_samples": 3, "max_concurrent": 2},
        "fixed": {"model": {"name": "mlp", "options": {"hidden": [16]}},
                  "data": {"name": "digits", "train_limit": 200},
                  "train": {"epochs": 1, "device": "cpu"},
                  "prune": {"criterion": "magnitude",
                            "timing": {"name": "after", "pretrain_epochs": 2}}},
        "params": {"prune.sparsity": {"type": "choice", "values": [0.5, 0.7, 0.9]}},
        "storage": s3_uri, "wandb": {"mode": "disabled"}})
    out = run_sweep(space)
    assert out.counts == {"ok": 3}
    fs, base = pafs.FileSystem.from_uri(join_path(s3_uri, "dense"))
    entries = [i.base_name for i in fs.get_file_info(pafs.FileSelector(base))]
    assert len(entries) == 1 and entries[0].endswith(".pt"), entries  # 3 trials, 1 training
    df = TrialStore(s3_uri).dataframe()
    assert (df["epochs"] == 3).all()  # each trial's history holds the 2 dense epochs + 1
