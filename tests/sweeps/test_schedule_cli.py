"""Tuned schedules from real sweep results: export, then apply (same model and a related one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def prunetune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> str:
    tmp = tmp_path_factory.mktemp("sched")
    space = parse_space({
        "name": "sched", "objectives": [{"metric": "test_accuracy", "mode": "max"},
                                        {"metric": "sparsity", "mode": "max"}],
        "sampler": {"name": "random", "seed": 3}, "budget": {"num_samples": 4,
                                                              "max_concurrent": 2},
        "fixed": {"model": {"name": "lenet5"},
                  "data": {"name": "digits", "train_limit": 500, "test_limit": 200},
                  "train": {"epochs": 2, "lr": 0.01, "device": "cpu"},
                  "prune": {"criterion": "snip", "schedule": "snip_it", "steps": 2,
                            "score_batches": 2}},
        "params": {"prune.sparsity": {"type": "float", "low": 0.6, "high": 0.95},
                   "prune.allocation": {"type": "choice", "values": ["global", "erk"]}},
        "storage": str(tmp / "sched"), "wandb": {"mode": "disabled"}})
    return run_sweep(space).results_dir


def test_export_best_and_apply_reproduces_the_trial(results: str, tmp_path: Path) -> None:
    df = TrialStore(results).dataframe()
    ok = df[(df.status == "ok") & (df.sparsity >= 0.7)]
    best = ok.sort_values(["test_accuracy", "trial_id"], ascending=[False, True]).iloc[0]
    out = tmp_path / "tuned.yaml"
    p = prunetune("schedule", "export", results, "--best", "test_accuracy",
                  "--where", "sparsity >= 0.7", "--out", str(out))
    assert p.returncode == 0, p.stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["format"] == "prunetune-schedule" and doc["version"] == 1
    assert doc["provenance"]["trial_id"] == best.trial_id
    assert doc["provenance"]["model"] == "lenet5" and doc["provenance"]["dataset"] == "digits"
    assert [layer["kind"] for layer in doc["layers"]] == ["conv", "conv", "linear", "linear",
                                                          "linear"]
    assert doc["layers"][0]["depth"] == 0.0 and doc["layers"][-1]["depth"] == 1.0
    for layer in doc["layers"]:
        assert layer["sparsity"] == pytest.approx(best[f"layer_sparsity.{layer['name']}"])

    res = tmp_path / "apply.json"
    p = prunetune("apply", str(out), "--json", str(res), "--masks", str(tmp_path / "m1"))
    assert p.returncode == 0, p.stderr
    r = json.loads(res.read_text())
    # same model, same seed, same config: the trial replayed exactly
    assert r["test_accuracy"] == pytest.approx(best.test_accuracy, abs=1e-12)
    expected = {k.removeprefix("layer_sparsity."): v for k, v in best.items()
                if k.startswith("layer_sparsity.")}
    assert r["layer_sparsity"] == pytest.approx(expected)
    p = prunetune("apply", str(out), "--masks", str(tmp_path / "m2"))
    assert p.returncode == 0
    a, b = load_file(tmp_path / "m1"), load_file(tmp_path / "m2")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_apply_to_a_related_model_and_refusals(results: str, tmp_path: Path) -> None:
    out = tmp_path / "t.yaml"
    tid = TrialStore(results).dataframe().query("status == 'ok'").trial_id.iloc[0]
    assert prunetune("schedule", "export", results, "--trial", tid, "--out", str(out)
                     ).returncode == 0
    target = yaml.safe_load(out.read_text())["prune"]["sparsity"]
    res = tmp_path / "vgg.json"
    p = prunetune("apply", str(out), "--model", "vgg11_bn", "--set", "model.options.width=0.125",
                  "--set", "train.epochs=1", "--json", str(res))
    assert p.returncode == 0, p.stderr
    assert "mapped 5 source layers" in p.stdout
    r = json.loads(res.read_text())
    src = yaml.safe_load(out.read_text())
    total = sum(x["numel"] for x in src["layers"])
    src_sparsity = sum(x["sparsity"] * x["numel"] for x in src["layers"]) / total
    assert abs(r["sparsity"] - src_sparsity) <= 0.005
    trial = TrialStore(results).dataframe().set_index("trial_id").loc[tid]
    assert target == pytest.approx(trial["config.prune.sparsity"], abs=1e-12)  # the trial's
    # a schedule with only linear layers has no profile for a CNN's convs: refused, exit 2
    linear_only = tmp_path / "linear.yaml"
    doc = yaml.safe_load(out.read_text())
    doc["layers"] = [x for x in doc["layers"] if x["kind"] == "linear"]
    linear_only.write_text(yaml.safe_dump(doc))
    p = prunetune("apply", str(linear_only), "--model", "resnet20", "--data", "synthetic")
    assert p.returncode == 2 and "no sensible mapping" in p.stderr
    p = prunetune("schedule", "export", results, "--trial", "nope", "--out", str(out))
    assert p.returncode == 2 and "no trial nope" in p.stderr
    p = prunetune("schedule", "export", results, "--best", "test_accuracy", "--where",
                  "sparsity >", "--out", str(out))
    assert p.returncode == 2 and "--where" in p.stderr


def test_export_reads_the_trials_folder_as_the_results(results: str, tmp_path: Path) -> None:
    tid = TrialStore(results).dataframe().query("status == 'ok'").trial_id.iloc[0]
    outs = []
    for i, src in enumerate((results, f"{results}/trials", f"{results}/trials/",
                             f"file://{results}/trials")):
        out = tmp_path / f"t{i}.yaml"
        p = prunetune("schedule", "export", src, "--trial", tid, "--out", str(out))
        assert p.returncode == 0, (src, p.stderr)
        outs.append(out.read_text())
    assert all(o == outs[0] for o in outs)
    p = prunetune("schedule", "export", str(tmp_path / "none"), "--trial", tid, "--out",
                  str(tmp_path / "x.yaml"))
    assert p.returncode == 2 and "no such directory" in p.stderr
