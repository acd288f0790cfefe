"""Reading a cluster sweep's results back from the object store, as infra/README.md says:
``prunetune pareto s3://bucket/prefix`` (moto S3 on 127.0.0.1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.results.pareto import load_results, pareto_front
from sweeps.results.store import TrialStore

from .conftest import S3Server

ROWS = [(0.9, 0.5), (0.8, 0.9), (0.7, 0.6)]  # (test_accuracy, sparsity): t2 is dominated by t1


@pytest.fixture
def results_uri(s3_server: S3Server) -> str:
    uri = s3_server.uri("runs/readback")
    store = TrialStore(uri)
    for i, (acc, sp) in enumerate(ROWS):
        store.write({"trial_id": f"t{i}", "status": "ok", "test_accuracy": acc, "sparsity": sp})
    return uri


def test_python_api_reads_the_front_from_s3(results_uri: str) -> None:
    df = load_results([results_uri])
    front = pareto_front(df, ["test_accuracy:max", "sparsity:max"])
    assert sorted(front["trial_id"]) == ["t0", "t1"]


def test_prunetune_pareto_reads_s3(results_uri: str) -> None:
    prunetune = str(Path(sys.executable).with_name("prunetune"))
    out = subprocess.run([prunetune, "pareto", results_uri, "-o", "test_accuracy:max",
                          "-o", "sparsity:max", "--format", "json"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(r["trial_id"] for r in json.loads(out.stdout)["rows"]) == ["t0", "t1"]
