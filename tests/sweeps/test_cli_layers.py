"""``prunetune layers CONFIG`` on the real CLI (issue 19, item 1)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from .conftest import cli

NET = """\
import torchvision


def build(input_shape, num_classes):
    return torchvision.models.VisionTransformer(
        image_size=input_shape[-1], patch_size=4, num_layers=2, num_heads=4, hidden_dim=32,
        mlp_dim=64, num_classes=num_classes)
"""

CONFIG = """\
model: {name: "vitnet:build"}
data: {name: synthetic}
prune: {criterion: magnitude}
"""


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    (tmp_path / "vitnet.py").write_text(NET)
    (tmp_path / "vit.yaml").write_text(textwrap.dedent(CONFIG))
    proc = cli("layers", "vit.yaml", *args, cwd=tmp_path, env_extra={"COLUMNS": "200"})
    out, _ = proc.communicate(timeout=240)
    return proc.returncode, out


def test_layers_lists_attention_and_the_zero_head(tmp_path: Path) -> None:
    rc, out = _run(tmp_path)
    assert rc == 0, out
    lines = out.splitlines()
    row = next(line for line in lines if "encoder_layer_0.self_attention.in_proj_weight" in line)
    assert "attention" in row and "96×32" in row and "3,072" in row
    head = next(line for line in lines if "heads.head.weight" in line)
    assert "all zero: left out" in head
    # 1536 (conv 32x3x4x4) + 2 x (4 x 32² + 2 x 32 x 64) + 10 x 32
    assert "total: 10 tensors, 18,240 weights" in out
    assert "pruned: 17,920 weights" in out


def test_layers_applies_set(tmp_path: Path) -> None:
    rc, out = _run(tmp_path, "--set", "prune.prune_zero_layers=true",
                   "--set", "prune.include=['*', 'encoder.pos_embedding']")
    assert rc == 0, out
    assert "all zero: pruned (prune_zero_layers)" in out
    row = next(line for line in out.splitlines() if "encoder.pos_embedding" in line)
    assert "parameter" in row and "1×65×32" in row
    assert "total: 11 tensors, 20,320 weights" in out


def test_layers_bad_pattern_is_one_line(tmp_path: Path) -> None:
    rc, out = _run(tmp_path, "--set", "prune.include=['nothing']")
    assert rc != 0
    assert "prune.include/exclude" in out and "Traceback" not in out
