"""SynFlow through LayerNorm and softmax attention (issue 19, item 5), on cases computed by
hand, and on the small ViT at 90 %."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from pruning_core.config import AllocationConfig
from pruning_core.masking.criteria import CRITERIA
from pruning_core.masking.criteria.base import ScoreContext
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters


def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    c = CRITERIA.get("synflow")
    params = prunable_parameters(model)
    ctx = ScoreContext(model=model, params=params, masks={}, batches=[], input_shape=input_shape,
                       loss_fn=nn.functional.cross_entropy, generator=torch.Generator(),
                       options=c.options())
    return c(ctx)


class NormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(2)
        self.fc = nn.Linear(2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x))


def test_layernorm_keeps_only_its_affine_scaling() -> None:
    net = NormNet()
    with torch.no_grad():
        net.norm.weight.copy_(torch.tensor([2.0, -3.0]))
        net.norm.bias.copy_(torch.tensor([0.5, 0.0]))
        net.fc.weight.copy_(torch.tensor([[-1.0, 2.0]]))
    # x = (1, 1) -> |γ| x + |β| = (2.5, 3); R = |w| · (2.5, 3); score = |w| (2.5, 3)
    # (normalising would turn (1, 1) into (0, 0), leaving scores (0.5 x 1, 0 x 2))
    s = synflow(net, (2,))["fc.weight"]
    assert s.tolist() == [[2.5, 6.0]]
    assert net.norm.weight.tolist() == [2.0, -3.0]  # the model is untouched


class AttnNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(2, 1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.att(x, x, x, need_weights=False)[0]


def test_attention_is_scored_through_linearised_softmax() -> None:
    net = AttnNet()
    eye = torch.eye(2)
    with torch.no_grad():
        net.att.in_proj_weight.copy_(torch.cat([eye, eye, -eye]))  # q = k = x, v = -x
        net.att.in_proj_bias.zero_()
        net.att.out_proj.weight.copy_(eye)
        net.att.out_proj.bias.zero_()
    # two all-ones tokens; under |θ|: q = k = v = (1, 1), s = q·k / √2 = √2,
    # attention (1 + s) / 2 per key, out_i = (1 + √2) v, R = Σ_tokens Σ_e out = 4 (1 + √2).
    # ∂R/∂Wq[e,e] = ∂R/∂s · ∂s/∂q_e = 4 · 1/√2 = 2√2 (same for Wk); ∂R/∂Wv[e,e] =
    # 2 tokens · (1 + √2); ∂R/∂Wo[e,e] = Σ_tokens out_e = 2 (1 + √2); off-diagonals score 0.
    s = synflow(net, (2, 2))
    inp, out = s["att.in_proj_weight"], s["att.out_proj.weight"]
    diag = torch.tensor([2 * math.sqrt(2)] * 4 + [2 * (1 + math.sqrt(2))] * 2)
    assert torch.allclose(inp[torch.arange(6), torch.arange(6) % 2].double(), diag.double())
    assert float(inp.sum()) == pytest.approx(float(diag.sum()))  # off-diagonals are 0
    assert torch.allclose(out.double(), 2 * (1 + math.sqrt(2)) * torch.eye(2).double())


def test_synflow_on_the_vit_at_90_percent_is_finite() -> None:
    torch.manual_seed(0)
    m = torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=4,
                                             num_heads=4, hidden_dim=128, mlp_dim=256,
                                             num_classes=10)
    with torch.no_grad():
        m.heads.head.weight.normal_(0, 0.02)  # a zero head makes every upstream score 0
    masks = MaskSet(prunable_parameters(m))
    pruner = Pruner(model=m, masks=masks, criterion="synflow",
                    allocation=AllocationConfig(name="global"), final_sparsity=0.9,
                    batches=[], input_shape=(3, 32, 32))
    scores = pruner.scores()
    assert all(bool(torch.isfinite(v).all()) for v in scores.values())
    assert all(bool(v.gt(0).any()) for v in scores.values())  # every layer carries flow
    pruner.step(0.9)
    assert masks.sparsity() == pytest.approx(0.9, abs=1e-5)


class FunctionalBlock(nn.Module):
    """nanoGPT-style: projections as Linear layers, F.scaled_dot_product_attention and
    F.layer_norm called directly."""

    def __init__(self) -> None:
        super().__init__()
        self.ln_weight = nn.Parameter(torch.tensor([2.0, -3.0]))
        self.ln_bias = nn.Parameter(torch.tensor([0.5, 0.0]))
        self.qkv = nn.Linear(2, 6, bias=False)
        self.proj = nn.Linear(2, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, 2)
        x = nn.functional.layer_norm(x, (2,), self.ln_weight, self.ln_bias)
        q, k, v = self.qkv(x).split(2, dim=-1)
        return self.proj(nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_functional_attention_and_layer_norm_are_linearised() -> None:
    net = FunctionalBlock()
    eye = torch.eye(2)
    with torch.no_grad():
        net.qkv.weight.copy_(torch.cat([eye, eye, eye]))
        net.proj.weight.copy_(eye)
    # ones -> |γ| x + |β| = a = (2.5, 3) on both tokens; q = k = v = a, s = a·a / √2 =
    # 15.25 / √2. Causal: token 0 sees itself (weight (1 + s) / 1), token 1 sees both
    # ((1 + s) / 2 each): out_0 = out_1 = (1 + s) a. R = 2 (1 + s)(2.5 + 3) = 11 (1 + s).
    # ∂R/∂proj[e, e] = Σ_tokens out_e = 2 (1 + s) a_e.
    s = 15.25 / math.sqrt(2)
    scores = synflow(net, (2, 2))
    expected = torch.diag(2 * (1 + s) * torch.tensor([2.5, 3.0])).double()
    assert torch.allclose(scores["proj.weight"].double(), expected)
