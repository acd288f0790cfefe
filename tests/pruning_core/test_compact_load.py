"""Issue 22, item 3: one function loads the compact file of any model (``load_compact``):
a built-in one from the file alone, the user's own factory as a callable or an import path,
or a dense model already built. The factory here is the user's code: defined in this module."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.structured import load_compact
from pruning_core.trials.experiment import run
from pruning_core.trials.registries import load_trial_config

#: the import path of :func:`build`, as a config names it
FACTORY = "tests.pruning_core.test_compact_load:build"


def build(input_shape: tuple[int, ...], num_classes: int, width: int = 24) -> nn.Module:
    """The user's model factory (``build(input_shape, num_classes, **options)``)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
                         nn.Linear(width, width // 2), nn.ReLU(),
                         nn.Linear(width // 2, num_classes))


def _config(model: dict) -> object:
    return load_trial_config({
        "seed": 0, "model": model,
        "data": {"name": "digits", "batch_size": 64, "train_limit": 128, "test_limit": 64},
        "train": {"epochs": 1, "optimizer": "sgd", "lr": 0.05},
        "prune": {"granularity": "channel", "criterion": "l1_filter", "sparsity": 0.5}})


@pytest.fixture(scope="module")
def factory_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A compact file of the factory model (what ``prunetune run --export-compact`` writes)
    and the compact network's parameter count."""
    out = tmp_path_factory.mktemp("compact") / "small.safetensors"
    result = run(_config({"name": FACTORY, "options": {"width": 20}}), compact_out=out)
    assert result.status == "ok"
    return out, result.params_kept


def _same_as_file(model: nn.Module, path: Path) -> None:
    state, own = load_file(path), model.state_dict()
    assert own.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(own[k], v), k


def test_a_factory_model_loads_by_import_path_callable_or_dense_model(
        factory_file: tuple[Path, int]) -> None:
    path, params_kept = factory_file
    by_path = load_compact(path, factory=FACTORY)
    by_callable = load_compact(path, factory=build)
    dense = build((1, 8, 8), 10, width=20)
    by_model = load_compact(path, model=dense)
    assert by_model is dense  # sliced in place
    for model in (by_path, by_callable, by_model):
        _same_as_file(model, path)
        assert sum(p.numel() for p in model.parameters()) == params_kept
        assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    widths = [m.out_features for m in by_path if isinstance(m, nn.Linear)]
    assert widths[-1] == 10 and sum(widths[:2]) < 20 + 10  # smaller than the dense 20 + 10
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(by_path(x), by_callable(x))


def test_a_factory_model_file_never_chooses_the_code(factory_file: tuple[Path, int]) -> None:
    path, _ = factory_file
    with pytest.raises(ConfigError, match=rf"model '{FACTORY}' is your own factory.*"
                                          rf"load_compact\(path, factory="):
        load_compact(path)  # the file names the factory; it is imported only when passed
    with pytest.raises(ConfigError, match="^factory: "):
        load_compact(path, factory="os:system")  # not the user's code: refused
    with pytest.raises(ConfigError, match="not both"):
        load_compact(path, factory=build, model=build((1, 8, 8), 10, width=20))
    with pytest.raises(ConfigError, match=r"small\.safetensors"):  # another architecture
        load_compact(path, factory=build, options={"width": 8})


def test_a_built_in_model_still_loads_from_the_file_alone(tmp_path: Path) -> None:
    out = tmp_path / "mlp.safetensors"
    result = run(_config({"name": "mlp", "options": {"hidden": [16, 8]}}), compact_out=out)
    loaded = load_compact(out)
    _same_as_file(loaded, out)
    assert sum(p.numel() for p in loaded.parameters()) == result.params_kept


def test_a_torchvision_model_loads_from_the_file_alone(tmp_path: Path) -> None:
    from pruning_core.structured import compact, groups, keep_indices, save_compact
    from pruning_core.workloads.models import create_model

    dense = create_model("tv:resnet18", (3, 32, 32), 10)
    gs = groups(dense, (3, 32, 32))
    keep = {g.id: torch.arange(g.size) % 2 == 0 for g in gs}  # every other channel
    small = compact(dense, gs, keep)
    out = tmp_path / "tv.safetensors"
    save_compact(out, small, keep_indices(dense, gs, keep),
                 {"model": {"name": "tv:resnet18", "options": {}}, "input_shape": [3, 32, 32],
                  "num_classes": 10})
    loaded = load_compact(out)
    small.eval(), loaded.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), small(x))
