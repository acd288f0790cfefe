import torch
from torch import nn

from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.measure.metrics import flops, param_counts


def test_flops_dense_and_effective():
    model = nn.Sequential(nn.Linear(10, 20, bias=False), nn.ReLU(), nn.Linear(20, 5, bias=False))
    masks = MaskSet(prunable_parameters(model))
    dense, eff = flops(model, (10,), masks)
    assert dense == 2 * (10 * 20 + 20 * 5) and eff == dense
    half = torch.zeros(20, 10, dtype=torch.bool)
    half[:10] = True
    masks.update({"0.weight": half})
    dense2, eff2 = flops(model, (10,), masks)
    assert dense2 == dense and eff2 == dense - 10 * 20  # half of layer 0's 400 FLOPs removed


def test_flops_conv_counts_and_params():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False))
    masks = MaskSet(prunable_parameters(model))
    dense, _ = flops(model, (3, 5, 5), masks)
    assert dense == 2 * 4 * 3 * 9 * 3 * 3  # 2·Cout·Cin·k²·Hout·Wout
    masks.update({"0.weight": torch.zeros(4, 3, 3, 3, dtype=torch.bool)})
    assert flops(model, (3, 5, 5), masks)[1] == 0
    assert param_counts(model, masks) == (108, 0)
