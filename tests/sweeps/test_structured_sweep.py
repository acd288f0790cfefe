"""A structured sweep end to end: channel pruning, compaction and measured speed-up as an
objective, on real Ray + Optuna + Parquet (tiny: digits, MLP)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeps.cli import app
from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space

from .conftest import REPO

SPACE = {
    "name": "structured",
    "objectives": [{"metric": "test_accuracy", "mode": "max"},
                   {"metric": "speedup", "mode": "max"}],
    "sampler": {"name": "random", "seed": 0},
    "budget": {"num_samples": 3, "max_concurrent": 1, "max_failures": 0},
    "fixed": {"model": {"name": "mlp", "options": {"hidden": [256, 128]}},
              "data": {"name": "digits", "batch_size": 256},
              "train": {"epochs": 1, "optimizer": "adam", "lr": 0.01, "device": "cpu"},
              "prune": {"granularity": "channel"},
              "metrics": {"speed": {"warmup": 2, "repeats": 5}}},
    "params": {"prune.criterion": {"type": "choice", "values": ["snap", "l1_filter", "cnip"]},
               "prune.sparsity": {"type": "float", "low": 0.5, "high": 0.9}},
}


@pytest.mark.slow
def test_speedup_is_a_sweep_objective_and_rows_carry_node_sparsity(
        tmp_path: Path, ray_local: None) -> None:
    space = parse_space({**SPACE, "storage": str(tmp_path / "res")})
    outcome = run_sweep(space)
    assert outcome.complete and outcome.counts == {"ok": 3}
    df = TrialStore(str(tmp_path / "res")).dataframe()
    assert len(df) == 3
    for _, row in df.iterrows():
        assert 0.0 < row["node_sparsity"] < 1.0
        assert row["sparsity"] > row["node_sparsity"] or row["config.prune.criterion"] == "cnip"
        assert row["params_kept"] < row["params"] and row["flops"] < row["flops_dense"]
        assert row["speedup"] > 0 and math.isfinite(row["speedup"])
        assert row["train_step_ms"] > 0 and row["train_step_ms_dense"] > 0
        assert row["train_flops"] > 0
    # the accuracy-speed front from the CLI, with the objective named on the command line
    res = CliRunner().invoke(app, ["pareto", str(tmp_path / "res"), "-o", "test_accuracy:max",
                                   "-o", "speedup:max"])
    assert res.exit_code == 0, res.output
    assert "speedup" in res.output


def test_shipped_structured_spaces_validate() -> None:
    for name in ("structured_mnist1d.yaml", "structured_resnet20_cifar10.yaml"):
        res = CliRunner().invoke(app, ["validate", str(REPO / "search_spaces" / name)])
        assert res.exit_code == 0, res.output


def test_speed_objective_without_metrics_speed_is_one_line_exit_2(tmp_path: Path) -> None:
    import yaml

    bad = {**SPACE, "fixed": {k: v for k, v in SPACE["fixed"].items() if k != "metrics"},
           "storage": str(tmp_path / "r")}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(bad))
    out = subprocess.run([sys.executable, "-m", "sweeps.cli", "validate", str(path)],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2, out.stdout + out.stderr
    line = (out.stdout + out.stderr).strip()
    assert "objectives: speedup needs metrics.speed" in line and "Traceback" not in line
    assert len(line.splitlines()) == 1


def untraceable(input_shape: tuple[int, ...], num_classes: int, **_: object) -> object:
    """4 x 4 features reach a Linear built for 64: torch-pruning's trace fails at layer '3'."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(64, num_classes))


@pytest.mark.slow
def test_a_model_torch_pruning_cannot_trace_is_an_error_trial_naming_the_layer(
        tmp_path: Path, ray_local: None) -> None:
    space = parse_space({**SPACE, "budget": {"num_samples": 1, "max_failures": 0},
                         "objectives": [{"metric": "test_accuracy", "mode": "max"}],
                         "fixed": {**SPACE["fixed"], "metrics": {}},
                         "params": {"prune.criterion": {"type": "choice", "values": ["snap"]}},
                         "storage": str(tmp_path / "res")})
    # 8x8 digits through a 3x3 conv with padding keep 4 x 8 x 8 = 256 features, not 64
    run_sweep(space, model_fn=untraceable)
    df = TrialStore(str(tmp_path / "res")).dataframe()
    assert list(df["status"]) == ["error"]
    err = df["error"].iloc[0]
    assert "cannot trace Sequential at layer '3' (Linear)" in err, err
    assert "\n" not in err
