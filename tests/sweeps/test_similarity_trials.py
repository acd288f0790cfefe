"""Trials of a finished sweep as similarity inputs (``prunetune similarity --results R A B``),
and the shipped WACV 2020 search spaces."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sweeps.cli import app
from sweeps.tune.trainable import trial_weights_path

REPO = Path(__file__).resolve().parents[2]
PRUNETUNE = str(Path(sys.executable).with_name("prunetune"))


@pytest.mark.parametrize("name", ["wacv2020_digits", "wacv2020_mnist1d"])
def test_the_wacv2020_spaces_validate(name: str) -> None:
    result = CliRunner().invoke(app, ["validate", str(REPO / f"search_spaces/{name}.yaml"),
                                      "--samples", "36"])
    assert result.exit_code == 0, result.output
    assert "ok: 36 sampled configurations are valid TrialConfigs" in result.output


def test_the_digits_study_is_the_mnist1d_study_on_digits() -> None:
    import yaml

    digits = yaml.safe_load((REPO / "search_spaces/wacv2020_digits.yaml").read_text())
    mnist = yaml.safe_load((REPO / "search_spaces/wacv2020_mnist1d.yaml").read_text())
    assert digits["params"] == mnist["params"]  # 3 methods x 4 sparsities x 3 seeds
    assert digits["budget"]["num_samples"] == 3 * 4 * 3
    assert digits["fixed"]["prune"] == mnist["fixed"]["prune"]
    assert digits["fixed"]["data"]["name"] == "digits" and digits["fixed"]["model"]["name"] == "mlp"
    assert digits["fixed"]["metrics"]["similarity"]["method"] == "cka"
    assert digits["fixed"]["metrics"]["keep_weights"] is True


def test_trial_weights_path() -> None:
    assert trial_weights_path("/r/dense", "t1") == "/r/weights/t1.safetensors"
    assert trial_weights_path("file:///r/dense", "t1") == "/r/weights/t1.safetensors"
    assert trial_weights_path("s3://b/r/dense", "t1") is None
    assert trial_weights_path(None, "t1") is None


# ----------------------------------------------------------------------------- end to end
def naive_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. 2019 as written: tr(KHLH) / √(tr(KHKH) tr(LHLH)), H = I - 11ᵀ/n."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    kh, lh = (x @ x.T) @ h, (y @ y.T) @ h
    return float(np.trace(kh @ lh) / math.sqrt(np.trace(kh @ kh) * np.trace(lh @ lh)))


def mlp_outputs(weights: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of the Linear modules 1, 3, 5 of Sequential(Flatten, Linear, ReLU, Linear, ReLU,
    Linear), computed by hand from the saved tensors."""
    from safetensors.numpy import load_file

    w = {k: v.astype(np.float64) for k, v in load_file(str(weights)).items()}
    h1 = x @ w["1.weight"].T + w["1.bias"]
    h3 = np.maximum(h1, 0) @ w["3.weight"].T + w["3.bias"]
    h5 = np.maximum(h3, 0) @ w["5.weight"].T + w["5.bias"]
    return {"1": h1, "3": h3, "5": h5}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PRUNETUNE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_compare_two_trials_of_a_finished_sweep_by_id(tmp_path: Path, ray_local: None) -> None:
    from pruning_core.workloads.data import load_dataset
    from sweeps.results.store import TrialStore
    from sweeps.tune.launch import run_sweep
    from sweeps.tune.space import parse_space

    space = parse_space({
        "name": "trials", "sampler": {"name": "grid", "seed": 0},
        "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "budget": {"num_samples": 2, "max_concurrent": 2, "max_failures": 0},
        "fixed": {"model": {"name": "mlp", "options": {"hidden": [32, 16]}},
                  "data": {"name": "digits", "train_limit": 512},
                  "train": {"epochs": 1, "optimizer": "sgd", "lr": 0.05, "device": "cpu"},
                  "prune": {"criterion": "magnitude",
                            "timing": {"name": "after", "pretrain_epochs": 1}},
                  "metrics": {"keep_weights": True}},
        "params": {"prune.sparsity": {"type": "choice", "values": [0.5, 0.9]}},
        "storage": str(tmp_path / "res"),
    })
    outcome = run_sweep(space)
    df = TrialStore(outcome.results_dir).dataframe()
    assert len(df) == 2 and set(df["status"]) == {"ok"}
    ids = df.sort_values("config.prune.sparsity")["trial_id"].tolist()  # [s=0.5, s=0.9]
    res = Path(outcome.results_dir)
    for tid in ids:
        assert (res / "weights" / f"{tid}.safetensors").is_file()

    out = _cli("similarity", "--results", str(res), ids[0], ids[1], "--examples", "200",
               "--json", "ab.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "ab.json").read_text())
    assert result["trials"] == {"a": ids[0], "b": ids[1], "results": str(res)}
    assert result["examples"] == 200
    # the hand computation: the first 200 test inputs of the trials' data (seed 0)
    test = load_dataset("digits", seed=0, train_limit=512).test
    x = np.stack([test[i][0].numpy().reshape(-1) for i in range(200)]).astype(np.float64)
    acts_a, acts_b = (mlp_outputs(res / "weights" / f"{t}.safetensors", x) for t in ids)
    got = {r["a"]: r["similarity"] for r in result["pairs"]}
    assert sorted(got) == ["1", "3", "5"]
    for layer, value in got.items():
        assert value == pytest.approx(naive_cka(acts_a[layer], acts_b[layer]), abs=1e-6), layer
    assert min(got.values()) < 0.999  # 50 % vs 90 % sparse: not the same network

    same = _cli("similarity", "--results", str(res), ids[1], ids[1], "--method", "svcca",
                "--examples", "200", "--json", "bb.json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    rows = json.loads((tmp_path / "bb.json").read_text())["pairs"]
    assert all(abs(r["similarity"] - 1.0) < 1e-9 for r in rows)

    def one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
        assert proc.returncode == 2 and not proc.stdout.strip(), proc.stdout
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        for w in words:
            assert w in proc.stderr, proc.stderr

    one_line_error(_cli("similarity", "--results", str(res), ids[0], "nope", cwd=tmp_path),
                   "'nope'", "2 trials", ids[0], ids[1])
    one_line_error(_cli("similarity", "--results", str(res), ids[0], ids[1], "x",
                        cwd=tmp_path), "two trial ids")
    one_line_error(_cli("similarity", "--results", str(tmp_path / "none"), ids[0], ids[1],
                        cwd=tmp_path), "not a directory")
    kept = res / "weights" / f"{ids[1]}.safetensors"
    kept.rename(kept.with_suffix(".moved"))
    one_line_error(_cli("similarity", "--results", str(res), ids[0], ids[1], cwd=tmp_path),
                   ids[1], "kept no weights", "keep_weights")
