import logging

import pytest
import torch
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.structured import groups
from pruning_core.workloads.models import create_model
from tests.pruning_core.structured_nets import TinyCat, TinyRes, assert_same_snapshot, snapshot


def _roles(group):
    return {(m.module, m.role) for m in group.members}


def test_residual_add_ties_channels_and_flatten_maps_columns():
    gs = groups(TinyRes(), (3, 2, 2))
    by_root = {frozenset(g.layers): g for g in gs}
    assert set(by_root) == {frozenset({"stem", "conv2"}), frozenset({"conv1"})}
    res = by_root[frozenset({"stem", "conv2"})]
    assert _roles(res) == {("stem", "out"), ("bn0", "out"), ("conv2", "out"),
                           ("conv1", "in"), ("fc", "in")}
    assert _roles(by_root[frozenset({"conv1"})]) == {("conv1", "out"), ("conv2", "in")}
    fc = next(m for m in res.members if m.module == "fc")
    # flatten of (4, 2, 2): channel c owns fc input columns 4c .. 4c+3
    order = torch.argsort(fc.index)
    assert fc.index[order].tolist() == list(range(16))
    assert fc.channel[order].tolist() == [c for c in range(4) for _ in range(4)]
    assert all(g.size == 4 for g in gs)


def test_concat_splits_consumer_columns_between_groups():
    gs = groups(TinyCat(), (3, 4, 4))
    cols = {}
    for g in gs:
        for m in g.members:
            if m.module == "conv_c" and m.role == "in":
                cols[tuple(g.layers)] = sorted(m.index.tolist())
    assert cols == {("conv_a",): [0, 1, 2], ("conv_b",): [3, 4]}


def test_classifier_outputs_are_never_grouped():
    for name, shape in [("mlp", (1, 4, 4)), ("lenet5", (1, 8, 8)), ("resnet20", (3, 8, 8))]:
        model = create_model(name, shape, 10)
        fc = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
        outs = {(m.module) for g in groups(model, shape) for m in g.members if m.role == "out"}
        assert fc not in outs, name


def test_groups_leave_model_as_found():
    model = TinyRes().train()
    before = snapshot(model)
    groups(model, (3, 2, 2))
    assert_same_snapshot(before, snapshot(model))  # tracing switches to eval; we switch back


def test_untraceable_model_names_the_layer():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    with pytest.raises(ConfigError, match=r"cannot trace Sequential at layer '3' \(Linear\)"):
        groups(model, (3, 7, 7))  # 4 * 5 * 5 features reach a Linear built for 64


class _Scale(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.ones(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s.view(1, -1, 1, 1)


def test_unsliceable_layer_is_named(caplog):
    only = nn.Sequential(nn.Conv2d(3, 4, 3), _Scale(4), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ConfigError, match=r"layer '1.s' .*coupled to the channels of '0'"):
        groups(only, (3, 4, 4))
    # with another prunable group, the coupled channels stay unpruned and a warning names it
    mixed = nn.Sequential(nn.Conv2d(3, 4, 3), _Scale(4), nn.Conv2d(4, 4, 1), nn.Flatten(),
                          nn.Linear(16, 2))
    with caplog.at_level(logging.WARNING):
        gs = groups(mixed, (3, 4, 4))
    assert [g.layers for g in gs] == [["2"]]
    assert "'1.s'" in caplog.text


def test_ignored_layers_are_not_roots():
    gs = groups(TinyRes(), (3, 2, 2), ignored_layers=["conv1"])
    assert [sorted(g.layers) for g in gs] == [["conv2", "stem"]]
    with pytest.raises(ConfigError, match="no layer named 'nope'"):
        groups(TinyRes(), (3, 2, 2), ignored_layers=["nope"])


def test_a_forward_error_torch_pruning_swallows_still_names_the_layer():
    """torch-pruning 1.6.1 returns a partial graph when this forward fails (a padded conv: 256
    features reach a Linear built for 64); the one-line error must still name the layer."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(64, 2))
    with pytest.raises(ConfigError, match=r"cannot trace Sequential at layer '3' \(Linear\)"):
        groups(model, (1, 8, 8))
