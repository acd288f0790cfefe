"""`prunetune run --weights-out` then `prunetune similarity` on the two networks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRUNETUNE = str(Path(sys.executable).with_name("prunetune"))

pytestmark = pytest.mark.slow

CONFIG = """\
seed: 0
model: {name: mlp, options: {hidden: [32, 16]}}
data: {name: digits, batch_size: 64, train_limit: 256, test_limit: 200}
train: {epochs: 2, optimizer: sgd, lr: 0.05}
prune: {criterion: magnitude, sparsity: 0.0}
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PRUNETUNE, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_similarity_of_a_network_with_itself_and_with_a_pruned_one(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CONFIG)
    assert _cli("run", "c.yaml", "--weights-out", "dense.safetensors", cwd=tmp_path).returncode == 0
    out = _cli("run", "c.yaml", "--set", "prune.sparsity=0.95", "--weights-out",
               "pruned.safetensors", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    same = _cli("similarity", "c.yaml", "dense.safetensors", "dense.safetensors", "--json",
                "same.json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    rows = json.loads((tmp_path / "same.json").read_text())["pairs"]
    assert [r["a"] for r in rows] == ["1", "3", "5"]
    assert all(abs(r["similarity"] - 1.0) < 1e-9 for r in rows)
    diff = _cli("similarity", "c.yaml", "dense.safetensors", "pruned.safetensors", "--method",
                "svcca", "--plot", "out/heat.png", "--json", "diff.json", cwd=tmp_path)
    assert diff.returncode == 0, diff.stderr
    result = json.loads((tmp_path / "diff.json").read_text())
    assert all(0.0 < r["similarity"] < 0.999 for r in result["pairs"])
    assert len(result["matrix"]["values"]) == 3 and (tmp_path / "out" / "heat.png").stat().st_size
    bad = _cli("similarity", "c.yaml", "dense.safetensors", "dense.safetensors", "--layer",
               "nope", cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "nope" in bad.stderr and not bad.stdout.strip()
