"""The README's "prune your own network" example, run as a user runs it (from its directory)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRUNETUNE = str(Path(sys.executable).with_name("prunetune"))

pytestmark = pytest.mark.slow


@pytest.fixture
def example(tmp_path: Path) -> Path:
    dst = tmp_path / "own_network"
    shutil.copytree(REPO / "examples" / "own_network", dst,
                    ignore=shutil.ignore_patterns("results", "__pycache__", "*.safetensors"))
    return dst


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def test_run_and_prune_a_trained_checkpoint(example: Path) -> None:
    out = subprocess.run([PRUNETUNE, "run", "run.yaml", "--set", "train.epochs=1",
                          "--json", "r.json"], cwd=example, env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    subprocess.run([sys.executable, "-c", "from train_dense import main; main(epochs=3)"],
                   cwd=example, env=_env(), check=True, timeout=300)
    out = subprocess.run([PRUNETUNE, "run", "after.yaml", "--set", "train.epochs=1",
                          "--json", "a.json"], cwd=example, env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    import json

    result = json.loads((example / "a.json").read_text())
    assert abs(result["sparsity"] - 0.9) < 1e-3 and result["test_accuracy"] > 0.5


def test_sweep_the_example_from_its_directory(example: Path) -> None:
    out = subprocess.run([PRUNETUNE, "sweep", "space.yaml", "--num-samples", "2",
                          "--num-cpus", "2"], cwd=example, env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    from sweeps.results.store import TrialStore

    df = TrialStore(str(example / "results" / "own_network")).dataframe()
    assert len(df) == 2 and set(df["status"]) == {"ok"}, df[["status", "error"]]
    assert set(df["config.model.name"]) == {"mynets.nets:build"}
