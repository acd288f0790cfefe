"""`prunetune run` of post-training pruning (Wanda, SparseGPT) and 2:4 on the digits MLP, as a
user runs it (a real subprocess)."""

import json
import os
import subprocess
import sys

import pytest

from tests.test_cli_run import prunetune

AFTER = ["--set", "prune.timing.name=after", "--set", "prune.timing.pretrain_epochs=2",
         "--set", "train.epochs=1", "--set", "prune.schedule=one_shot", "--set", "prune.steps=1",
         "--set", "prune.allocation=uniform", "--set", "prune.score_batches=4"]


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["wanda", "sparsegpt"])
def test_run_after_training_with_calibration_criteria(tmp_path, criterion):
    out = tmp_path / "r.json"
    p = prunetune("run", "configs/digits_snip.yaml", *AFTER, "--set",
                  f"prune.criterion={criterion}", "--set", "prune.sparsity=0.5",
                  "--json", str(out))
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["status"] == "ok" and r["sparsity"] == pytest.approx(0.5, abs=1e-4)
    assert r["collapsed_layers"] == [] and r["test_accuracy"] > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["wanda", "sparsegpt", "magnitude"])
def test_run_2_4_records_the_speedup_as_unmeasured_on_cpu(tmp_path, criterion):
    out, masks = tmp_path / "r.json", tmp_path / "m.safetensors"
    p = prunetune("run", "configs/digits_snip.yaml", *AFTER, "--set",
                  f"prune.criterion={criterion}", "--set", "prune.pattern={n: 2, m: 4}",
                  "--set", "prune.sparsity=0.5", "--set", "metrics.speed={repeats: 2}",
                  "--set", "train.device=cpu", "--json", str(out), "--masks", str(masks))
    assert p.returncode == 0, p.stderr
    assert "2:4 semi-structured" in p.stdout and "not measured" in p.stdout  # never a gain
    r = json.loads(out.read_text())
    assert r["sparsity"] == pytest.approx(0.5) and r["nm_speedup"] is None
    assert "no semi-structured sparse kernel on cpu" in r["nm_speedup_note"]
    from safetensors.torch import load_file

    for name, m in load_file(str(masks)).items():  # every group of 4 inputs keeps exactly 2
        assert (m.reshape(m.shape[0], -1, 4).sum(-1) == 2).all(), name


def test_pattern_mismatch_is_one_line_exit_2():
    p = prunetune("run", "configs/digits_snip.yaml", "--set", "prune.pattern={n: 2, m: 4}")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "set steps: 1" in p.stderr or "differs from 1 - n/m" in p.stderr, p.stderr


def test_names_lists_the_calibration_criteria_and_comparison_groups():
    p = prunetune("names")
    assert p.returncode == 0
    for word in ("wanda", "sparsegpt", "comparisons", "row", "nm"):
        assert word in p.stdout, word


def test_bench_nm_on_cpu_says_it_needs_cuda_and_writes_open(tmp_path):
    from tests.test_cli_run import ROOT

    out = tmp_path / "nm.json"
    p = subprocess.run([sys.executable, "benchmarks/bench_nm.py", "--device", "cpu", "--out",
                        str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    assert "needs CUDA" in p.stdout
    r = json.loads(out.read_text())
    assert r["status"] == "open" and r["rows"] == [] and "no semi-structured" in r["reason"]
