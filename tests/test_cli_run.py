"""`prunetune run` end to end, as a user runs it (a real subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def prunetune(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_run_digits_end_to_end_writes_json(tmp_path):
    out = tmp_path / "result.json"
    p = prunetune("run", "configs/digits_snip.yaml", "--set", "train.epochs=3",
                  "--set", "prune.sparsity=0.95", "--json", str(out))
    assert p.returncode == 0, p.stderr
    assert "test accuracy" in p.stdout and "per-layer sparsity" in p.stdout
    r = json.loads(out.read_text())
    for key in ("test_accuracy", "sparsity", "layer_sparsity", "collapsed_layers", "params",
                "flops", "status"):
        assert key in r
    assert r["status"] == "ok" and abs(r["sparsity"] - 0.95) < 1e-4
    assert r["test_accuracy"] > 0.5  # LeNet-300-100 at 95% sparsity still learns digits
    assert r["config"]["prune"]["sparsity"] == 0.95


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "prune.criterion=snipp"], "prune.criterion: unknown criterion 'snipp'; valid:"),
    (["--set", "prune.sparsity=1.5"], "prune.sparsity: Input should be less than 1"),
    (["--set", "prune.steps=0"], "prune.steps: Input should be greater than or equal to 1"),
    (["--set", "model.name=vgg99"], "model.name: unknown model 'vgg99'"),
    (["--set", "data.name=cifar10"], "data.root"),
    (["--set", "nonsense"], "expected dotted.key=value"),
])
def test_bad_input_exit_2_one_line(args, message):
    p = prunetune("run", "configs/digits_snip.yaml", *args)
    assert p.returncode == 2
    assert message in p.stderr.replace("\n", " ") and "Traceback" not in p.stderr


def test_missing_and_malformed_config(tmp_path):
    p = prunetune("run", str(tmp_path / "nope.yaml"))
    assert p.returncode == 2 and "no such file" in p.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("prune: [unclosed\n")
    p = prunetune("run", str(bad))
    assert p.returncode == 2 and "not valid YAML" in p.stderr


def test_names_lists_registries():
    p = prunetune("names")
    assert p.returncode == 0
    for word in ("snip", "synflow", "snip_it", "erk", "imp", "random_sparse", "cnn1d", "mnist1d"):
        assert word in p.stdout
    from pruning_core.structured.criteria import STRUCTURED_CRITERIA

    assert "channel criteria" in p.stdout  # issue 17: the structured criteria are listed too
    for name in STRUCTURED_CRITERIA.names():
        assert name in p.stdout


def test_run_prints_the_robustness_lines_and_a_doomed_trial_with_its_reason(tmp_path):
    """Issue 18 in `prunetune run`: effective sparsity, the gap and adversarial accuracy in the
    summary and the JSON; a doomed trial says why, exit 0 (it is a result, not an error)."""
    out = tmp_path / "r.json"
    base = ["run", "configs/digits_snip.yaml", "--set", "train.epochs=1",
            "--set", "data.train_limit=256", "--set", "data.test_limit=128"]
    p = prunetune(*base, "--set", "metrics.adversarial={attack: fgsm, samples: 32}",
                  "--json", str(out))
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert "effective sparsity (disconnected)" in p.stdout and "adversarial accuracy" in p.stdout
    assert r["effective_sparsity"] >= r["sparsity"] and r["adversarial"]["samples"] == 32
    assert abs(r["gap_accuracy"] - (r["train_accuracy"] - r["test_accuracy"])) < 1e-12
    doomed = prunetune(*base, "--set", "prune.criterion=magnitude", "--set",
                       "prune.sparsity=0.9999", "--json", str(out))
    assert doomed.returncode == 0, doomed.stderr
    r = json.loads(out.read_text())
    assert r["status"] == "doomed" and r["epochs"] == 0
    assert "doomed: no input->output path" in r["error"]
    assert "no input->output path" in doomed.stdout
