"""Shared fixtures: tiny models and synthetic batches (unit tests stay fast)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def tiny_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10),
    )


@pytest.fixture
def convnet() -> nn.Module:
    return tiny_convnet()


@pytest.fixture
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))
            for _ in range(2)]


@pytest.fixture(autouse=True)
def _import_allowances(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no ``--allow-import`` / extra code root (``code_trust`` keeps them
    in the environment, for Ray's workers): what one test allows never leaks into the next."""
    from pruning_core.base.code_trust import ALLOW_ENV, ROOTS_ENV

    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.delenv(ROOTS_ENV, raising=False)


def user_code_dir(monkeypatch: pytest.MonkeyPatch, path: object, *modules: str) -> None:
    """``path`` as the user's working directory of code (first on ``sys.path``, the current
    directory), with earlier tests' imports of ``modules`` (same names, other folders) forgotten."""
    import sys

    monkeypatch.syspath_prepend(str(path))
    monkeypatch.chdir(str(path))
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            monkeypatch.delitem(sys.modules, name)
