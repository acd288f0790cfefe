"""Attention heads as channel groups (issue 19, item 1): masks, exact removal, scores, a run."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from pruning_core.structured import channel_masks, full_keep, groups, keep_indices, select_channels
from pruning_core.structured.criteria import STRUCTURED_CRITERIA, StructuredContext
from pruning_core.structured.graph import is_head_group
from pruning_core.trials.experiment import run
from pruning_core.trials.registries import load_trial_config

E, H = 8, 2  # the tiny block: width 8, two heads of 4
D = E // H


class Block(nn.Module):
    """Tokens -> self-attention -> mean over tokens -> classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, H, batch_first=True)
        self.head = nn.Linear(E, 3)
        with torch.no_grad():
            self.attn.in_proj_bias.normal_()  # non-zero biases: removal must not need them
            self.attn.out_proj.bias.normal_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, x, x, need_weights=False)
        return self.head(y.mean(1))


def block() -> Block:
    torch.manual_seed(0)
    return Block()


def vit() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=2,
                                                num_heads=4, hidden_dim=32, mlp_dim=64,
                                                num_classes=10)


def by_hand(mha: nn.MultiheadAttention, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Self-attention from the dense weights, head by head with F.scaled_dot_product_attention,
    each head's output scaled by its gate (0 = head removed) before out_proj."""
    e, h = mha.embed_dim, mha.num_heads
    d = e // h
    w, b = mha.in_proj_weight, mha.in_proj_bias
    out = mha.out_proj.bias.expand(*x.shape[:-1], e)
    for i in range(h):
        q, k, v = (x @ w[j * e + i * d:j * e + (i + 1) * d].T + b[j * e + i * d:j * e + (i + 1) * d]
                   for j in range(3))
        o = F.scaled_dot_product_attention(q, k, v)
        out = out + gates[i] * o @ mha.out_proj.weight[:, i * d:(i + 1) * d].T
    return out


def head_group(gs, name: str):
    return next(g for g in gs if is_head_group(g) and g.members[0].module == name)


def test_a_head_group_per_attention_next_to_the_mlp_neurons() -> None:
    gs = groups(vit(), (3, 32, 32))
    heads = [g for g in gs if is_head_group(g)]
    assert sorted(g.members[0].module for g in heads) == [
        f"encoder.layers.encoder_layer_{i}.self_attention" for i in range(2)]
    assert all(g.size == 4 for g in heads)
    assert sorted(g.size for g in gs if not is_head_group(g)) == [64, 64]  # MLP neurons


def test_removing_a_head_zeroes_exactly_its_qkv_rows_and_out_proj_columns() -> None:
    m = block()
    gs = groups(m, (5, E))
    g = head_group(gs, "attn")
    keep = full_keep(gs)
    keep[g.id] = torch.tensor([True, False])  # head 1: q/k/v rows 4..7, 12..15, 20..23
    masks = channel_masks(m, gs, keep)
    assert set(masks) == {"attn.in_proj_weight", "attn.out_proj.weight"}
    rows = (~masks["attn.in_proj_weight"]).all(1).nonzero().flatten().tolist()
    assert rows == [4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23]
    assert int((~masks["attn.in_proj_weight"]).sum()) == 12 * E  # whole rows, nothing else
    cols = (~masks["attn.out_proj.weight"]).all(0).nonzero().flatten().tolist()
    assert cols == [4, 5, 6, 7] and int((~masks["attn.out_proj.weight"]).sum()) == 4 * E


def _masked(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, mask in masks.items():
            params[n].mul_(mask)
    return model


def test_masked_block_equals_the_block_without_that_head() -> None:
    dense = block()
    m = block()
    gs = groups(m, (5, E))
    keep = full_keep(gs)
    keep[head_group(gs, "attn").id] = torch.tensor([False, True])
    _masked(m, channel_masks(m, gs, keep))
    x = torch.randn(3, 5, E)
    with torch.no_grad():
        got, _ = m.attn(x, x, x, need_weights=False)
        want = by_hand(dense.attn, x, torch.tensor([0.0, 1.0]))
        full = by_hand(dense.attn, x, torch.ones(2))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(got, full, atol=1e-3)  # the head did contribute


def test_masked_vit_equals_the_vit_with_heads_removed_by_hand() -> None:
    dense, m = vit(), vit()
    gs = groups(m, (3, 32, 32))
    keep = full_keep(gs)
    gates = {0: torch.tensor([1.0, 0.0, 1.0, 0.0]), 1: torch.tensor([0.0, 1.0, 1.0, 1.0])}
    for i, gate in gates.items():
        keep[head_group(gs, f"encoder.layers.encoder_layer_{i}.self_attention").id] = gate > 0
    _masked(m, channel_masks(m, gs, keep))

    def replaced(gate: torch.Tensor):
        def hook(mod, args, _out):
            return by_hand(mod, args[0], gate), None
        return hook

    for i, gate in gates.items():
        dense.encoder.layers[i].self_attention.register_forward_hook(replaced(gate))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(x), dense.eval()(x), atol=1e-5, rtol=1e-4)


def _ctx(model: nn.Module, gs, batches, criterion: str) -> StructuredContext:
    options = STRUCTURED_CRITERIA.get(criterion).options.model_validate({})  # the defaults
    return StructuredContext(model=model, groups=gs, keep=full_keep(gs), batches=batches,
                             input_shape=(5, E), loss_fn=F.cross_entropy,
                             generator=torch.Generator().manual_seed(0), options=options)


def test_l1_and_l2_head_scores_sum_the_heads_qkv_rows() -> None:
    m = block()
    gs = groups(m, (5, E))
    g = head_group(gs, "attn")
    w = m.attn.in_proj_weight.detach()
    for name, p in (("l1_filter", 1), ("l2_filter", 2)):
        got = STRUCTURED_CRITERIA.get(name)(_ctx(m, gs, [], name))[g.id]
        for h in range(H):
            rows = torch.cat([w[j * E + h * D:j * E + (h + 1) * D] for j in range(3)])
            want = sum(float(r.norm(p=p)) for r in rows)
            assert float(got[h]) == pytest.approx(want, rel=1e-5)


def test_snap_scores_a_head_by_its_gate_gradient() -> None:
    m = block().eval()
    gs = groups(m, (5, E))
    g = head_group(gs, "attn")
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 5, E, generator=gen), torch.randint(0, 3, (4,), generator=gen)
    got = STRUCTURED_CRITERIA.get("snap")(_ctx(m, gs, [(x, y)], "snap"))[g.id]
    gates = torch.ones(H, requires_grad=True)
    loss = F.cross_entropy(m.head(by_hand(m.attn, x, gates).mean(1)), y)
    (grad,) = torch.autograd.grad(loss, gates)
    torch.testing.assert_close(got.float(), (grad.abs() / loss.abs()).detach(), rtol=1e-4,
                               atol=1e-7)
    m.requires_grad_(False)  # a frozen attention is scored the same and left frozen
    again = STRUCTURED_CRITERIA.get("snap")(_ctx(m, gs, [(x, y)], "snap"))[g.id]
    torch.testing.assert_close(again, got)
    assert not any(p.requires_grad for p in m.parameters())


def test_snip_head_score_sums_the_weight_scores_of_qkv_rows_and_out_proj_columns() -> None:
    m = block()
    gs = groups(m, (5, E))
    g = head_group(gs, "attn")
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(4, 5, E, generator=gen), torch.randint(0, 3, (4,), generator=gen)
    got = STRUCTURED_CRITERIA.get("snip")(_ctx(m, gs, [(x, y)], "snip"))[g.id]
    loss = F.cross_entropy(m.eval()(x), y)  # SNIP (eval mode by default): |w * dL/dw|
    wi, wo = m.attn.in_proj_weight, m.attn.out_proj.weight
    gi, go = torch.autograd.grad(loss, [wi, wo])
    si, so = (wi * gi).abs().detach(), (wo * go).abs().detach()
    for h in range(H):
        want = sum(float(si[j * E + h * D:j * E + (h + 1) * D].sum()) for j in range(3)) \
            + float(so[:, h * D:(h + 1) * D].sum())
        assert float(got[h]) == pytest.approx(want, rel=1e-4)


def test_heads_are_ranked_apart_from_neurons_with_a_head_kept_per_attention() -> None:
    m = vit()
    gs = groups(m, (3, 32, 32))
    layer = [head_group(gs, f"encoder.layers.encoder_layer_{i}.self_attention") for i in (0, 1)]
    gen = torch.Generator().manual_seed(0)
    scores = {g.id: torch.rand(g.size, generator=gen) - 2 for g in gs}  # neurons below heads
    scores[layer[0].id] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    scores[layer[1].id] = torch.tensor([5.0, 6.0, 7.0, 8.0])
    t, f = True, False
    for sparsity, first, second, neurons in ((0.25, [f, f, t, t], [t, t, t, t], 96),
                                             (0.75, [f, f, f, t], [f, f, t, t], 32)):
        keep = select_channels(scores, gs, sparsity)
        assert keep[layer[0].id].tolist() == first  # 0.75: six heads, less the floor's one
        assert keep[layer[1].id].tolist() == second
        assert sum(int(keep[g.id].sum()) for g in gs if not is_head_group(g)) == neurons
    indices = keep_indices(m, gs, keep)
    assert not [n for n in indices if "self_attention" in n]  # heads are masked, not sliced
    assert sum(len(e["out"]) for n, e in indices.items() if n.endswith("mlp.0")) == 32


def test_a_channel_run_on_a_vit_prunes_heads_and_trains(tmp_path) -> None:
    from safetensors.torch import load_file

    cfg = load_trial_config({
        "seed": 0,
        "model": {"name": "vit_tiny",
                  "options": {"patch": 4, "depth": 2, "heads": 4, "width": 16, "mlp": 32}},
        "data": {"name": "digits", "batch_size": 32, "train_limit": 64, "test_limit": 32},
        "train": {"epochs": 2, "optimizer": "adam", "lr": 1e-3},
        "prune": {"granularity": "channel", "criterion": "snap", "sparsity": 0.5}})
    masks_out, weights_out = tmp_path / "masks.safetensors", tmp_path / "w.safetensors"
    result = run(cfg, masks_out=masks_out, weights_out=weights_out)
    assert result.status == "ok" and result.node_sparsity == pytest.approx(0.5, abs=0.01)
    masks, weights = load_file(masks_out), load_file(weights_out)
    removed = 0
    for i in range(2):
        name = f"blocks.{i}.attn.in_proj_weight"
        kept = masks[name].bool().view(3, 4, 4, 16).all(dim=(2, 3))  # (q/k/v, head): whole heads
        assert bool((kept == kept[0]).all()) and bool(kept[0].any())  # >= 1 head per layer
        gone = ~kept[0]
        removed += int(gone.sum())
        w = weights[name].view(3, 4, 4, 16)  # trained, compacted: attention keeps its size
        assert bool((w[:, gone] == 0).all()) and bool((w[:, ~gone] != 0).any())
        cols = weights[f"blocks.{i}.attn.out_proj.weight"].view(16, 4, 4)
        assert bool((cols[:, gone] == 0).all())
        # the MLP neurons were sliced away for real
        assert weights[f"blocks.{i}.mlp.0.weight"].shape[0] < 32
    assert removed in (3, 4)  # half of the 8 heads (3 if a layer's last head was kept)
