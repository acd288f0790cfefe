"""Effective sparsity on hand-built networks whose disconnected weights are counted by hand."""

from __future__ import annotations

import torch
from torch import nn

from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.measure.effective import connectivity, remove_disconnected


def _masks(model: nn.Module, **rules: torch.Tensor) -> MaskSet:
    params = prunable_parameters(model)
    out = {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
    for key, m in rules.items():
        out[key.replace("__", ".")] = m
    return MaskSet(params, out)


def test_mlp_dead_units_cut_their_weights_on_both_sides() -> None:
    # 3 -> 4 -> 2. Hidden unit 0 receives nothing (its 3 inputs pruned): its 2 outgoing weights
    # are on no path. Hidden unit 3 feeds nothing (its 2 outputs pruned): its 3 incoming are dead.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    m0 = torch.ones(4, 3, dtype=torch.bool)
    m0[0] = False
    m2 = torch.ones(2, 4, dtype=torch.bool)
    m2[:, 3] = False
    masks = _masks(model, **{"0__weight": m0, "2__weight": m2})
    conn = connectivity(model, masks, (3,))
    assert conn.total == 12 + 8 and conn.kept == 9 + 6
    assert conn.disconnected == 3 + 2 and conn.effective == 10
    assert abs(conn.effective_sparsity - (1 - 10 / 20)) < 1e-12
    assert conn.masks["0.weight"][3].sum() == 0 and conn.masks["2.weight"][:, 0].sum() == 0
    assert conn.dead_units == {"0.weight": 2, "2.weight": 0}  # units 0 and 3 of the hidden layer
    assert conn.has_path


def test_a_collapsed_layer_leaves_no_path_and_everything_is_disconnected() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(),
                          nn.Linear(4, 2))
    masks = _masks(model, **{"2__weight": torch.zeros(4, 4, dtype=torch.bool)})
    conn = connectivity(model, masks, (3,))
    assert conn.effective == 0 and not conn.has_path and conn.effective_sparsity == 1.0
    assert conn.disconnected == 12 + 8


def test_conv_bn_maxpool_channel_without_input_disconnects_the_next_layer() -> None:
    # conv1: 2 -> 3 channels, 3x3; channel 1 gets no input. BatchNorm and max pooling follow.
    # conv2 (3 -> 2, 3x3) weights reading channel 1 (2 x 9 = 18) are dead, and so are ...
    # none of conv1's others. A zero BatchNorm gamma on channel 2 cuts it as well.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    m0 = torch.ones(3, 2, 3, 3, dtype=torch.bool)
    m0[1] = False
    masks = _masks(model, **{"0__weight": m0})
    conn = connectivity(model, masks, (2, 6, 6))
    assert conn.disconnected == 2 * 9
    assert conn.masks["4.weight"][:, 1].sum() == 0 and conn.masks["4.weight"][:, 0].all()
    with torch.no_grad():
        model[1].weight[2] = 0.0  # gamma 0: channel 2's output is a constant
    conn = connectivity(model, masks, (2, 6, 6))
    assert conn.disconnected == 2 * 9 + 2 * 9 + 2 * 9  # conv2 from 1 and 2, conv1 into 2
    assert conn.dead_units["0.weight"] == 2


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(3, 4)
        self.f1 = nn.Linear(4, 4)
        self.f2 = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        return self.out(h + self.f2(torch.relu(self.f1(h))))


def test_a_residual_branch_cut_off_keeps_the_skip_path() -> None:
    model = _Residual()
    masks = _masks(model, **{"f1__weight": torch.zeros(4, 4, dtype=torch.bool)})
    conn = connectivity(model, masks, (3,))
    assert masks.collapsed() == ["f1.weight"]
    assert conn.has_path and conn.disconnected == 16  # f2 reads nothing; inp and out live
    assert conn.masks["inp.weight"].all() and conn.masks["out.weight"].all()


def test_layernorm_does_not_hide_paths_and_the_model_is_unchanged() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.GELU(), nn.Linear(4, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    conn = connectivity(model, _masks(model), (3,))
    assert conn.disconnected == 0 and conn.effective == 20
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters()) and model.training


def test_remove_disconnected_prunes_exactly_the_dead_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    m2 = torch.ones(2, 4, dtype=torch.bool)
    m2[:, 3] = False  # hidden unit 3 feeds nothing
    masks = _masks(model, **{"2__weight": m2})
    masks.apply()
    x = torch.randn(5, 3)
    y = model(x)
    conn = remove_disconnected(model, masks, (3,))
    assert conn.disconnected == 3 and masks.kept() == conn.effective == 12 + 6 - 3
    assert (model[0].weight[3] == 0).all()
    assert torch.allclose(model(x), y)  # weights that fed nothing: the function is the same


def test_deep_wide_nets_do_not_overflow_to_a_false_answer() -> None:
    layers: list[nn.Module] = []
    for _ in range(150):  # 128^150 paths overflow float64: the probe rescales by fan-in
        layers += [nn.Linear(128, 128), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(128, 2))
    conn = connectivity(model, _masks(model), (128,))
    assert conn.disconnected == 0 and conn.has_path
