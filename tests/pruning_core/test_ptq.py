"""Post-training pruning (Wanda, SparseGPT) and per-row comparison groups, on hand-sized
layers (docs/transformers.md)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from pruning_core.config import AllocationConfig
from pruning_core.masking.compare import per_row
from pruning_core.masking.criteria import CRITERIA
from pruning_core.masking.criteria.sparsegpt import obs_prune
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters

R2 = math.sqrt(2.0)
W34 = [[1.0, -2.0, 3.0, 0.5], [-1.0, 1.0, 1.0, -1.0], [0.5, 0.5, 2.0, 2.0]]
X2 = [[1.0, 2.0, 0.0, 1.0], [1.0, 0.0, 0.0, -1.0]]  # two calibration rows


def _layer(w: list[list[float]] | torch.Tensor) -> nn.Sequential:
    w = torch.as_tensor(w, dtype=torch.float32)
    net = nn.Sequential(nn.Linear(w.shape[1], w.shape[0], bias=False))
    with torch.no_grad():
        net[0].weight.copy_(w)
    return net


def _pruner(net: nn.Module, criterion: str, x: torch.Tensor, sparsity: float,
            **kw: object) -> Pruner:
    masks = MaskSet(prunable_parameters(net))
    batches = [(x, torch.zeros(x.shape[0], dtype=torch.long))]
    return Pruner(model=net, masks=masks, criterion=criterion,
                  allocation=AllocationConfig(name="uniform"), final_sparsity=sparsity,
                  batches=batches, input_shape=(x.shape[-1],), **kw)


def test_wanda_score_by_hand_and_model_unchanged():
    net = _layer(W34)
    before = copy.deepcopy(net.state_dict())
    scores = _pruner(net, "wanda", torch.tensor(X2), 0.5).scores()["0.weight"]
    # ‖X_j‖₂ over the two rows: (√2, 2, 0, √2); score = |W_ij| · ‖X_j‖₂
    expected = torch.tensor([[R2, 4.0, 0.0, 0.5 * R2],
                             [R2, 2.0, 0.0, R2],
                             [0.5 * R2, 1.0, 0.0, 2 * R2]])
    torch.testing.assert_close(scores, expected)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_wanda_tokens_on_leading_dims_count_like_rows():
    # a (batch, tokens, features) input: every leading position is one token
    net = _layer(W34)
    x = torch.tensor(X2).reshape(1, 2, 4)
    scores = _pruner(net, "wanda", x, 0.5).scores()["0.weight"]
    assert scores[0, 1].item() == pytest.approx(4.0) and scores[2, 3].item() == pytest.approx(
        2 * R2)


def test_wanda_prunes_per_row_by_default():
    net = _layer(W34)
    p = _pruner(net, "wanda", torch.tensor(X2), 0.5)
    p.step(0.5)
    # two per row; row 1 ties √2 (cols 0 and 3): the lower position wins
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 0, 1]], dtype=torch.bool)
    assert torch.equal(p.masks["0.weight"], expected)
    assert torch.equal(net[0].weight != 0, expected)


def test_wanda_layer_comparison_differs_from_row():
    net = _layer(W34)
    p = _pruner(net, "wanda", torch.tensor(X2), 0.5, compare="layer")
    p.step(0.5)
    # the six largest over the whole layer: 4, 2√2, 2, √2 (x3: positions (0,0), (1,0), (1,3))
    assert p.masks["0.weight"].sum(1).tolist() == [2, 3, 1]


def test_wanda_conv_unfolds_inputs():
    conv = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False))
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    masks = MaskSet(prunable_parameters(conv))
    p = Pruner(model=conv, masks=masks, criterion="wanda",
               allocation=AllocationConfig(name="uniform"), final_sparsity=0.5,
               batches=[(x, torch.zeros(1, dtype=torch.long))], input_shape=(1, 3, 3))
    scores = p.scores()["0.weight"]
    # the 4 patches: [0,1,3,4] [1,2,4,5] [3,4,6,7] [4,5,7,8]; norm per kernel offset
    norms = torch.tensor([0 + 1 + 9 + 16, 1 + 4 + 16 + 25, 9 + 16 + 36 + 49,
                          16 + 25 + 49 + 64], dtype=torch.float32).sqrt().reshape(1, 1, 2, 2)
    torch.testing.assert_close(scores, conv[0].weight.detach().abs() * norms)


@pytest.mark.parametrize(("rows", "cols", "keep", "counts"), [
    (5, 7, 17, [4, 4, 3, 3, 3]), (3, 4, 6, [2, 2, 2]), (4, 3, 0, [0, 0, 0, 0]),
    (2, 5, 10, [5, 5]),
])
def test_per_row_keep_counts_are_exact(rows, cols, keep, counts):
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(rows, cols, generator=gen)
    mask = per_row(scores, torch.ones(rows, cols, dtype=torch.bool), keep)
    assert mask.sum(1).tolist() == counts
    for r in range(rows):  # and they are the row's best
        if 0 < counts[r] < cols:
            assert scores[r][mask[r]].min() > scores[r][~mask[r]].max()


def test_per_row_nests_and_is_available_to_every_criterion():
    assert per_row(torch.ones(2, 4), torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]]).bool(),
                   4).sum(1).tolist() == [1, 2]
    torch.manual_seed(0)
    for name in ("magnitude", "random", "snip", "wanda"):
        net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4))
        masks = MaskSet(prunable_parameters(net))
        x = torch.randn(16, 8)
        p = Pruner(model=net, masks=masks, criterion=name,
               allocation=AllocationConfig(name="uniform"), final_sparsity=0.5,
                   batches=[(x, torch.randint(0, 4, (16,)))], input_shape=(8,), compare="row")
        p.step(0.5)
        assert masks["0.weight"].sum(1).tolist() == [4] * 6, name
        assert masks["2.weight"].sum(1).tolist() == [3] * 4, name


def test_sparsegpt_refuses_a_comparison_group():
    from pruning_core.base.errors import ConfigError

    with pytest.raises(ConfigError, match="sparsegpt chooses its own masks"):
        _pruner(_layer(W34), "sparsegpt", torch.tensor(X2), 0.5, compare="row")


# ---- SparseGPT ------------------------------------------------------------------------------

def _damped(x: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    h = 2.0 * x.T @ x / x.shape[0]  # H = 2XXᵀ / n
    return h + percdamp * h.diagonal().mean() * torch.eye(h.shape[0])


def test_sparsegpt_single_removal_is_the_obs_closed_form():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    w = torch.tensor([[0.01, 1.0, -1.0]], dtype=torch.float64)  # w_0 has the lowest saliency
    h = 2.0 * x.T @ x / 10
    new, keep = obs_prune(w, h, prune=1)
    assert keep.tolist() == [[False, True, True]]
    hinv = torch.linalg.inv(_damped(x))
    delta = -w[0, 0] / hinv[0, 0] * hinv[:, 0]  # δ = −w_q / [H⁻¹]_qq · H⁻¹_{:,q}
    torch.testing.assert_close(new[0], w[0] + delta)
    assert new[0, 0] == 0


def _errors(sparsity: float, pattern: tuple[int, int] | None = None) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(32, 32, generator=gen) * torch.linspace(0.1, 3.0, 32)
    x = torch.randn(256, 32, generator=gen) @ a  # correlated features of unequal scale
    w = torch.randn(16, 32, generator=gen)
    out = {}
    for name, compare in (("magnitude", "layer"), ("wanda", "row"), ("sparsegpt", None)):
        net = _layer(w)
        p = _pruner(net, name, x, sparsity, compare=compare, pattern=pattern)
        p.step(sparsity)
        assert p.masks.sparsity() == pytest.approx(sparsity)
        with torch.no_grad():
            out[name] = float(((x @ w.T - net(x)) ** 2).sum())
    return out


@pytest.mark.parametrize("sparsity", [0.5, 0.75])
def test_sparsegpt_reconstruction_beats_magnitude_and_wanda(sparsity):
    err = _errors(sparsity)
    assert err["sparsegpt"] < err["wanda"] and err["sparsegpt"] < err["magnitude"], err


def test_sparsegpt_2_4_reconstruction_beats_magnitude_and_wanda():
    err = _errors(0.5, (2, 4))
    assert err["sparsegpt"] < err["wanda"] and err["sparsegpt"] < err["magnitude"], err


def test_sparsegpt_updates_kept_weights_and_masks_stay_applied():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    w0 = net[0].weight.detach().clone()
    x = torch.randn(64, 8)
    p = _pruner(net, "sparsegpt", x, 0.5)
    p.step(0.5)
    m = p.masks["0.weight"]
    assert int(m.sum()) == 32 and torch.all(net[0].weight[~m] == 0)
    assert not torch.allclose(net[0].weight[m], w0[m])  # the reconstruction moved them


def test_sparsegpt_block_counts_sum_to_the_layer_keep():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=gen)
    w = torch.randn(3, 10, generator=gen)
    _, keep = obs_prune(w, 2 * x.T @ x / 64, prune=13, blocksize=4)
    assert int(keep.sum()) == 30 - 13


def test_sparsegpt_refuses_a_blocksize_that_splits_groups():
    from pruning_core.base.errors import ConfigError

    net = _layer(torch.randn(4, 8))
    p = _pruner(net, "sparsegpt", torch.randn(16, 8), 0.5, pattern=(2, 4),
                criterion_options={"blocksize": 6})
    with pytest.raises(ConfigError, match="blocksize: 6 is not a multiple"):
        p.step(0.5)


def test_calibration_criteria_are_registered_with_their_groups():
    assert CRITERIA.get("wanda").compare == "row" and CRITERIA.get("wanda").needs_data
    assert CRITERIA.get("sparsegpt").rewrite is not None
    assert CRITERIA.get("magnitude").rewrite is None


def test_wanda_sequential_scores_layer_two_on_the_pruned_layer_one():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 4, bias=False))
    x = torch.randn(20, 6)
    w1, w2 = net[0].weight.detach().clone(), net[2].weight.detach().clone()
    p = _pruner(net, "wanda", x, 0.5)
    p.step(0.5)
    # reference by hand: layer 1 keeps its 3 best |W|·‖X‖ per row; layer 2 then sees
    # relu(x @ (W1 ⊙ M1)ᵀ) and keeps its 4 best per row
    s1 = w1.abs() * x.norm(dim=0)
    m1 = torch.zeros_like(w1, dtype=torch.bool).scatter_(1, s1.topk(3, dim=1).indices, True)
    h = torch.relu(x @ (w1 * m1).T)
    s2 = w2.abs() * h.norm(dim=0)
    m2 = torch.zeros_like(w2, dtype=torch.bool).scatter_(1, s2.topk(4, dim=1).indices, True)
    assert torch.equal(p.masks["0.weight"], m1) and torch.equal(p.masks["2.weight"], m2)
    dense_h = torch.relu(x @ w1.T)  # one-pass scoring would use the dense layer 1
    assert not torch.allclose(h.norm(dim=0), dense_h.norm(dim=0))


def test_wanda_conv1d_unfolds_like_a_1xk_conv():
    conv = nn.Sequential(nn.Conv1d(2, 3, 2, bias=False))
    x = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]])  # (B=1, C=2, L=3)
    masks = MaskSet(prunable_parameters(conv))
    p = Pruner(model=conv, masks=masks, criterion="wanda",
               allocation=AllocationConfig(name="uniform"), final_sparsity=0.5,
               batches=[(x, torch.zeros(1, dtype=torch.long))], input_shape=(2, 3))
    # features (c, k): windows [1,2],[2,3] on channel 0, [0,1],[1,-1] on channel 1
    norms = torch.tensor([[1 + 4, 4 + 9], [0 + 1, 1 + 1]], dtype=torch.float32).sqrt()
    torch.testing.assert_close(p.scores()["0.weight"], conv[0].weight.detach().abs() * norms)


def test_sparsegpt_prunes_conv_to_the_exact_count():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 5 * 5, 3))
    x = torch.randn(8, 2, 5, 5)
    p = _pruner(net, "sparsegpt", x, 0.75)
    p.input_shape = (2, 5, 5)
    p.step(0.75)
    assert p.masks.kept_per_layer() == {"0.weight": 18, "3.weight": 75}


@pytest.mark.parametrize(("layer", "message"), [
    (nn.Conv2d(2, 2, 1, groups=2), "grouped conv"),
    (nn.Conv3d(1, 1, 1), "Linear, Conv1d, Conv2d and self-attention layers only"),
])
def test_calibration_refuses_what_it_cannot_unfold_in_one_line(layer, message):
    from pruning_core.base.errors import ConfigError

    net = nn.Sequential(layer)
    shape = (2, 3, 3) if isinstance(layer, nn.Conv2d) else (1, 2, 2, 2)
    x = torch.randn(2, *shape)
    p = Pruner(model=net, masks=MaskSet(prunable_parameters(net)), criterion="wanda",
               allocation=AllocationConfig(), final_sparsity=0.5,
               batches=[(x, torch.zeros(2, dtype=torch.long))], input_shape=shape)
    with pytest.raises(ConfigError, match=message) as exc:
        p.step(0.5)
    assert "\n" not in str(exc.value)


class _Block(nn.Module):
    """A pre-norm-free self-attention block as torchvision's ViT calls it."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, x, x, need_weights=False)
        return self.fc(y).mean(1)


def _attention_inputs(seed: int = 0) -> tuple[_Block, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    block = _Block().eval()
    x = torch.randn(3, 5, 8)  # (B, L, E)
    with torch.no_grad():  # the attention output out_proj multiplies, computed by hand
        a = block.attn
        q, k, v = (x @ a.in_proj_weight.T + a.in_proj_bias).split(8, dim=-1)
        heads = [t.reshape(3, 5, 2, 4).transpose(1, 2) for t in (q, k, v)]
        att = torch.softmax(heads[0] @ heads[1].transpose(-1, -2) / 2.0, dim=-1) @ heads[2]
        pre_out = att.transpose(1, 2).reshape(3, 5, 8)
    return block, x, pre_out


def test_wanda_reads_self_attention_projections():
    block, x, pre_out = _attention_inputs()
    names = ["attn.in_proj_weight", "attn.out_proj.weight", "fc.weight"]
    params = dict(block.named_parameters())
    masks = MaskSet({n: params[n] for n in names})
    p = Pruner(model=block, masks=masks, criterion="wanda",
               allocation=AllocationConfig(name="uniform"), final_sparsity=0.5,
               batches=[(x, torch.zeros(3, dtype=torch.long))], input_shape=(5, 8))
    scores = p.scores()
    a = block.attn
    torch.testing.assert_close(scores["attn.in_proj_weight"],
                               a.in_proj_weight.detach().abs() * x.reshape(-1, 8).norm(dim=0))
    torch.testing.assert_close(scores["attn.out_proj.weight"],
                               a.out_proj.weight.detach().abs()
                               * pre_out.reshape(-1, 8).norm(dim=0))
    p.step(0.5)
    assert masks.kept_per_layer() == {"attn.in_proj_weight": 96, "attn.out_proj.weight": 32,
                                      "fc.weight": 16}


def test_sparsegpt_runs_through_self_attention():
    block, x, _ = _attention_inputs(1)
    names = ["attn.in_proj_weight", "attn.out_proj.weight", "fc.weight"]
    params = dict(block.named_parameters())
    masks = MaskSet({n: params[n] for n in names})
    p = Pruner(model=block, masks=masks, criterion="sparsegpt",
               allocation=AllocationConfig(name="uniform"), final_sparsity=0.5,
               batches=[(x, torch.zeros(3, dtype=torch.long))], input_shape=(5, 8), pattern=(2, 4))
    p.step(0.5)
    for n in names:
        assert torch.all((masks[n].reshape(masks[n].shape[0], -1, 4).sum(-1)) == 2), n


def test_a_weight_whose_module_never_runs_is_named():
    from pruning_core.base.errors import ConfigError

    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    net.forward = lambda x: net[0](x)  # the second layer is never called
    p = _pruner(net, "wanda", torch.randn(4, 4), 0.5)
    with pytest.raises(ConfigError, match=r"1.weight received no input"):
        p.scores()
