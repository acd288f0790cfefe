"""``benchmarks/gpu.sh --dry-run``: every step of the GPU script starts, runs tiny on CPU and
writes its JSON, and the summary lists each with exit code 0 (issue 20, item 6). Slow: the six
benchmark scripts each import torch (about 1-2 minutes on 2 shared cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["packing_cnn1d", "packing_resnet", "nm", "engine", "structured", "train", "members",
         "exactness"]


@pytest.mark.slow
def test_every_gpu_step_starts_and_writes_its_json(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    committed = _committed_gpu_results()
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--out",
                        str(tmp_path)], capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((tmp_path / "gpu_summary.json").read_text())
    assert summary["device"] == "cpu" and summary["dry_run"] is True
    assert [s["step"] for s in summary["steps"]] == STEPS
    for s in summary["steps"]:
        assert s["rc"] == 0 and s["written"] is True, s
        assert Path(s["json"]).parent == tmp_path and f"JSON: {s['json']}" in p.stdout
        # the members step's JSON travels inside the summary (the device returns 8 files)
        assert Path(s["json"]).exists() == (s["step"] != "members"), s
    assert len(list(tmp_path.iterdir())) <= 8
    members = summary["member_costs"]["rows"]
    assert [r["mode"] for r in members] == ["now", "no-batched-scoring"]
    assert all(r["k"] == 2 and r["pack_s"] > 0 for r in members)
    for name, workload in (("packing_cnn1d", "cnn1d"), ("packing_resnet20", "resnet20")):
        rows = json.loads((tmp_path / f"{name}.json").read_text())["rows"]
        assert rows and all(r["workload"] == workload for r in rows)
        assert all("error" not in r["solo"] and "error" not in r["packed"] for r in rows), rows
        assert all(r["speedup"] > 0 for r in rows)
    assert json.loads((tmp_path / "nm.json").read_text())["status"] == "open"  # no CPU kernel
    assert json.loads((tmp_path / "train.json").read_text())["rows"]
    junit = (tmp_path / "exactness.xml").read_text()
    assert 'failures="0"' in junit and 'errors="0"' in junit and "test_cnn1d" in junit
    # nothing written beside the committed results (an H200's figures), none of them changed
    assert _committed_gpu_results() == committed


def _committed_gpu_results() -> dict[str, bytes]:
    gpu = ROOT / "benchmarks" / "results" / "gpu"
    return {f.name: f.read_bytes() for f in sorted(gpu.iterdir())} if gpu.exists() else {}


@pytest.mark.slow
def test_only_runs_the_named_steps(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", "--only",
                        "nm,train", "--out", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads((tmp_path / "gpu_summary.json").read_text())
    assert [s["step"] for s in summary["steps"]] == ["nm", "train"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["gpu_summary.json", "nm.json",
                                                          "train.json"]


def test_gpu_script_refuses_an_unknown_option(tmp_path: Path) -> None:
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--bogus"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--dry-run" in p.stderr
