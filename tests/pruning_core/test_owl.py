"""OWL (Yin et al. 2024; luuyin/OWL lib/prune_all.py): outlier ratios, densities, exact counts.

Every expected number below is worked out by hand from the paper's formula:
D = fraction of |W| * ||X_j|| above M * mean; densities 1 - s + (D - min) / (max - min) * 2 lambda,
centred (size-weighted)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.config import AllocationConfig
from pruning_core.masking.allocation import ALLOCATIONS, AllocationContext
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.owl import group_of, input_norms, outlier_ratio, owl_densities
from pruning_core.masking.schedules import sparsity_steps
from pruning_core.masking.targets import prunable_parameters
from pruning_core.workloads.models import create_model


class TwoInputs(nn.Module):
    """Layer ``a`` reads features 0..9 of the input, layer ``b`` features 10..19."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(10, 5, bias=False)
        self.b = nn.Linear(10, 5, bias=False)
        for p in self.parameters():
            nn.init.ones_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x[:, :10]) + self.b(x[:, 10:])


def _context(model: nn.Module, batches, sparsity: float, **options) -> AllocationContext:
    params = prunable_parameters(model)
    return AllocationContext(
        shapes={n: tuple(p.shape) for n, p in params.items()},
        kept={n: p.numel() for n, p in params.items()}, sparsity=sparsity,
        final_sparsity=sparsity, options=AllocationConfig(name="owl", **options),
        scores={n: p.detach().abs() for n, p in params.items()},
        masks={n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()},
        model=model, params=params, batches=batches)


def test_the_layer_with_activation_outliers_gets_the_lower_sparsity_by_hand() -> None:
    """W all ones; one input feature of ``a`` has norm 100, every other feature norm 1.
    a: metric = 100 on column 0 (5 entries), 1 on 45 -> mean 10.9, 5 x mean 54.5 -> D_a = 5/50.
    b: all 1 -> D_b = 0. Scaled to [0, 2 x 0.08]: a 0.16, b 0; centred (equal sizes): +-0.08.
    s = 0.5: density a 0.58 -> 29 of 50 kept (sparsity 0.42), b 0.42 -> 21 kept (0.58)."""
    x = torch.ones(1, 20)
    x[0, 0] = 100.0
    model = TwoInputs()
    counts = ALLOCATIONS.get("owl")().keep_counts(_context(model, [(x, torch.zeros(1))], 0.5))
    assert counts == {"a.weight": 29, "b.weight": 21}


def test_outlier_ratio_by_hand() -> None:
    t = torch.tensor([1.0] * 9 + [100.0])  # mean 10.9; 5 x mean = 54.5: one entry above
    assert outlier_ratio(t, 5.0) == pytest.approx(0.1)
    assert outlier_ratio(torch.tensor([1.0, 2.0, 3.0, 4.0]), 1.0) == pytest.approx(0.5)  # > 2.5
    assert outlier_ratio(torch.ones(7), 5.0) == 0.0


def test_densities_three_groups_by_hand() -> None:
    """D = 0.1, 0.05, 0 -> scaled 0.16, 0.08, 0; size-weighted mean (100, 100, 200) = 24 / 400
    = 0.06; s = 0.6: densities 0.50, 0.42, 0.34 (and 50 + 42 + 68 = 160 = 0.4 x 400)."""
    d = owl_densities({"A": 0.1, "B": 0.05, "C": 0.0}, {"A": 100, "B": 100, "C": 200}, 0.6, 0.08)
    assert d == pytest.approx({"A": 0.50, "B": 0.42, "C": 0.34})
    # s = 0.9: offsets +-0.08 would leave B 0.02 < 0.05 (half of 1 - s): shrunk by 0.625
    assert owl_densities({"A": 0.1, "B": 0.0}, {"A": 1, "B": 1}, 0.9, 0.08) == \
        pytest.approx({"A": 0.15, "B": 0.05})
    assert owl_densities({"A": 0.2, "B": 0.2}, {"A": 5, "B": 9}, 0.7, 0.08) == \
        pytest.approx({"A": 0.3, "B": 0.3})  # equal ratios: uniform (the authors divide by 0)


def test_input_norms_by_hand_linear_tokens_and_conv_channels() -> None:
    lin = nn.Sequential(nn.Linear(3, 2))
    batches = [(torch.tensor([[[1.0, 2.0, 0.0], [2.0, 0.0, 0.0]]]), None),  # (B=1, T=2, 3)
               (torch.tensor([[[2.0, 1.0, 3.0], [0.0, 0.0, 4.0]]]), None)]
    norms = input_norms(lin, {"0.weight": lin[0].weight}, batches)
    # feature 0: 1 + 4 + 4 + 0 = 9; feature 1: 4 + 0 + 1 + 0 = 5; feature 2: 0 + 0 + 9 + 16
    assert norms["0.weight"].shape == (1, 3)
    assert torch.allclose(norms["0.weight"].flatten().float(),
                          torch.tensor([3.0, math.sqrt(5.0), 5.0]))
    conv = nn.Sequential(nn.Conv2d(2, 1, 1))
    x = torch.cat([torch.ones(1, 1, 2, 2), 3 * torch.ones(1, 1, 2, 2)], dim=1)
    n = input_norms(conv, {"0.weight": conv[0].weight}, [(x, None)])["0.weight"]
    assert n.shape == (1, 2, 1, 1)  # channel 0: 4 x 1 -> 2; channel 1: 4 x 9 -> 6
    assert torch.allclose(n.flatten().float(), torch.tensor([2.0, 6.0]))
    assert lin.training and conv.training  # modes restored


def test_blocks_group_the_tensors_of_one_transformer_block() -> None:
    assert group_of("h.0.attn.c_attn.weight") == "h.0"
    assert group_of("blocks.3.mlp.0.weight") == "blocks.3"
    assert group_of("layer1.0.conv1.weight") == "layer1.0"
    assert group_of("lm_head.weight") == "lm_head.weight"
    assert group_of("0.weight") == "0"


def _gpt() -> nn.Module:
    torch.manual_seed(0)
    return create_model("gpt_tiny", (8,), 256, n_layer=2, n_head=2, n_embd=16)


def _tokens(n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.randint(0, 256, (4, 8), generator=g),
             torch.randint(0, 256, (4, 8), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("group", ["block", "layer"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_exact_total_and_every_layer_within_0_and_1(group: str, sparsity: float) -> None:
    model = _gpt()
    ctx = _context(model, _tokens(), sparsity, owl_group=group)
    counts = ALLOCATIONS.get("owl")().keep_counts(ctx)
    sizes = ctx.sizes
    assert sum(counts.values()) == round((1 - sparsity) * sum(sizes.values()))
    assert all(1 <= counts[n] <= sizes[n] for n in sizes)  # sparsity in [0, 1) per layer
    # no layer emptied: at least half the mean density (the guard), within rounding
    assert all(counts[n] >= 0.5 * (1 - sparsity) * sizes[n] - 1 for n in sizes)


def test_block_grouping_gives_one_density_per_block() -> None:
    model = _gpt()
    owl = ALLOCATIONS.get("owl")()
    owl.keep_counts(_context(model, _tokens(), 0.7))
    assert len({owl.densities[n] for n in owl.densities if n.startswith("h.0.")}) == 1
    assert len(set(owl.densities.values())) == 3  # h.0, h.1, lm_head
    lo, hi = min(owl.densities.values()), max(owl.densities.values())
    assert hi - lo == pytest.approx(2 * 0.08)  # the spread is 2 lambda, as the authors'


def test_dense_layers_min_density_and_nesting_through_the_engine() -> None:
    model = _gpt()
    masks = MaskSet(prunable_parameters(model))
    opts = AllocationConfig(name="owl", keep_first_dense=True, min_density=0.05)
    p = Pruner(model=model, masks=masks, criterion="magnitude", allocation=opts,
               final_sparsity=0.8, batches=_tokens(), input_shape=(8,))
    first = next(iter(masks.masks))
    previous = {k: m.clone() for k, m in masks.masks.items()}
    for s in sparsity_steps("exponential", 0.8, 3):
        p.step(s)
        assert masks.kept() == round((1 - s) * masks.numel())
        assert bool(masks[first].all())
        for k, m in masks.masks.items():
            assert m.sum() >= math.ceil(0.05 * m.numel())
            assert not (m & ~previous[k]).any()
        previous = {k: m.clone() for k, m in masks.masks.items()}


def test_vit_with_multihead_attention_runs_and_counts_exactly() -> None:
    """``nn.MultiheadAttention`` uses ``out_proj``'s weight without calling the module, so no
    input norm is captured there: |W| alone (with a warning), and the counts stay exact."""
    torch.manual_seed(0)
    model = create_model("vit_tiny", (3, 8, 8), 10, depth=1, heads=2, width=16, mlp=32)
    batches = [(torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,)))]
    ctx = _context(model, batches, 0.8)
    counts = ALLOCATIONS.get("owl")().keep_counts(ctx)
    assert sum(counts.values()) == round(0.2 * sum(ctx.sizes.values()))
    norms = input_norms(model, ctx.params, batches)
    assert "blocks.0.mlp.0.weight" in norms and "blocks.0.attn.out_proj.weight" not in norms


def test_without_calibration_batches_one_line_config_error() -> None:
    model = TwoInputs()
    with pytest.raises(ConfigError, match="prune.allocation: owl needs calibration batches"):
        ALLOCATIONS.get("owl")().keep_counts(_context(model, [], 0.5))
