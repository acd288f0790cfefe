"""`validate` (and so `sweep`, which runs the same checks first) builds the user's model."""

from __future__ import annotations

from pathlib import Path

import pytest

from pruning_core.errors import ConfigError
from sweeps.tune.space import parse_space, validate_space

NETS = '''
from torch import nn

def good(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))

def broken(input_shape, num_classes):
    raise RuntimeError("boom")

def nothing(input_shape, num_classes):
    return nn.Sequential(nn.Flatten())
'''


@pytest.fixture
def space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "valnets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(factory: str):
        return parse_space({
            "name": "v", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
            "fixed": {"model": {"name": f"valnets:{factory}"}, "data": {"name": "digits"}},
            "params": {"prune.sparsity": {"type": "float", "low": 0.3, "high": 0.9}},
            "storage": str(tmp_path / "res")})
    return make


def test_a_good_factory_validates(space) -> None:
    assert len(validate_space(space("good"), n=4)) >= 4


@pytest.mark.parametrize(("factory", "pattern"), [
    ("broken", r"^model\.name: factory 'valnets:broken' raised RuntimeError: boom$"),
    ("nothing", r"^model\.name: the model 'valnets:nothing' builds has no Conv or Linear"),
])
def test_a_bad_factory_fails_validation_in_one_line(space, factory: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        validate_space(space(factory), n=4)
