"""Issue 22, item 4: ``schedule export`` and ``apply`` name the kind of sparsity of every
target they print: weight sparsity for weight pruning; for channel pruning the schedule's
target is node sparsity (cnip: weights and nodes together), printed with the weight sparsity
the trial reached. Results rows written through the store (no sweep), the real CLI in-process."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pruning_core.config import flatten
from pruning_core.trials.experiment import prunable_layers
from pruning_core.trials.registries import load_trial_config
from sweeps.cli import app
from sweeps.results.store import TrialStore

BASE: dict[str, Any] = {
    "seed": 0, "model": {"name": "mlp", "options": {"hidden": [16]}},
    "data": {"name": "digits", "batch_size": 64, "train_limit": 128, "test_limit": 64},
    "train": {"epochs": 1, "lr": 0.01, "device": "cpu"},
}


def _results(root: Path, prune: dict[str, Any], layer_sparsity: float) -> Path:
    """One ok row of a trial pruned as ``prune`` says, every layer at ``layer_sparsity``."""
    cfg = load_trial_config({**json.loads(json.dumps(BASE)), "prune": prune})
    row: dict[str, Any] = {"sweep": "kinds", "trial_id": "t00", "status": "ok",
                           "test_accuracy": 0.8, "sparsity": layer_sparsity}
    for key, value in flatten(cfg.model_dump(mode="json")).items():
        row[f"config.{key}"] = value if value != {} else None
    for info in prunable_layers(cfg):
        row[f"layer_sparsity.{info.name}"] = layer_sparsity
    TrialStore(str(root)).write(row)
    return root


def _export(results: Path, out: Path) -> str:
    res = CliRunner().invoke(app, ["schedule", "export", str(results), "--trial", "t00",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split())


@pytest.mark.parametrize(("prune", "reached", "printed"), [
    ({"criterion": "magnitude", "sparsity": 0.8}, 0.8606, "target weight sparsity 0.8606"),
    ({"granularity": "channel", "criterion": "snap", "sparsity": 0.641}, 0.8606,
     "target node sparsity 0.6410 (weight sparsity 0.8606 reached)"),
    ({"granularity": "channel", "criterion": "cnip", "sparsity": 0.7}, 0.75,
     "target weight+node sparsity 0.7000 (weight sparsity 0.7500 reached)"),
])
def test_export_names_the_kind_of_its_target(tmp_path: Path, prune: dict[str, Any],
                                             reached: float, printed: str) -> None:
    line = _export(_results(tmp_path / "res", prune, reached), tmp_path / "s.yaml")
    assert printed in line, line
    assert not re.search(r"target \d", line), line  # never a bare "target 0.8606"


def test_apply_mapping_names_weight_sparsity(tmp_path: Path) -> None:
    results = _results(tmp_path / "res", {"criterion": "magnitude", "sparsity": 0.8}, 0.8)
    schedule = tmp_path / "s.yaml"
    _export(results, schedule)
    res = CliRunner().invoke(app, ["apply", str(schedule), "--set",
                                   "model.options.hidden=[24]"])  # a related model: mapped
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "mapped 2 source layers onto 2 target layers by kind and depth; target weight " \
           "sparsity 0.8000" in out, out
