"""Transformers (issue 19, items 1-4): every attention weight found, masked, counted and
scored; all-zero layers left out of pruning; GraSP through attention."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torchvision
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.config import AllocationConfig, PruneConfig
from pruning_core.masking.criteria import CRITERIA
from pruning_core.masking.engine import Pruner, zero_layers
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import layer_infos, prunable_parameters
from pruning_core.measure.effective import connectivity
from pruning_core.measure.metrics import flops, param_counts
from pruning_core.trials.registries import ALLOCATIONS

E, T, MLP = 128, 65, 256  # width, tokens (64 patches + class token), MLP width
IN = (3, 32, 32)


def vit() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=4, num_layers=4,
                                                num_heads=4, hidden_dim=E, mlp_dim=MLP,
                                                num_classes=10)


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, *IN, generator=g), torch.randint(0, 10, (4,), generator=g))]


def attn(i: int) -> str:
    return f"encoder.layers.encoder_layer_{i}.self_attention"


def test_vit_targets_include_attention_projections() -> None:
    infos = layer_infos(vit())
    by_name = {i.name: i for i in infos}
    assert len(infos) == 1 + 4 * 4 + 1  # conv_proj, 4 x (in_proj, out_proj, 2 MLP), head
    assert by_name[f"{attn(0)}.in_proj_weight"].kind == "attention"
    assert by_name[f"{attn(0)}.in_proj_weight"].shape == (3 * E, E)
    assert by_name[f"{attn(3)}.out_proj.weight"].kind == "attention"  # an nn.Linear subclass
    assert by_name["encoder.layers.encoder_layer_0.mlp.0.weight"].kind == "linear"
    assert by_name["conv_proj.weight"].kind == "conv"
    # 6144 (conv 128x3x4x4) + 4 x (3E*E + E*E + 2*E*MLP) + 10*E
    assert sum(i.numel for i in infos) == 6144 + 4 * (4 * E * E + 2 * E * MLP) + 10 * E


def test_separate_qkv_projections_are_found() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.att = nn.MultiheadAttention(8, 2, kdim=4, vdim=6, batch_first=True)

    names = {i.name: i for i in layer_infos(Net())}
    assert {n for n in names if n.startswith("att.")} == {
        "att.q_proj_weight", "att.k_proj_weight", "att.v_proj_weight", "att.out_proj.weight"}
    assert names["att.k_proj_weight"].shape == (8, 4)
    assert names["att.v_proj_weight"].kind == "attention"


def test_include_names_extra_parameters_and_exclude_wins() -> None:
    m = vit()
    default = prunable_parameters(m)
    assert "encoder.pos_embedding" not in default and "class_token" not in default
    more = layer_infos(m, include=["*", "encoder.pos_embedding"])
    assert [i.name for i in more if i.kind == "parameter"] == ["encoder.pos_embedding"]
    # a pattern that matches default weights still filters them
    only_attn = prunable_parameters(m, include=["*.self_attention.*"])
    assert len(only_attn) == 8
    assert "encoder.pos_embedding" not in prunable_parameters(
        m, include=["*", "encoder.pos_embedding"], exclude=["*pos_embedding"])
    with pytest.raises(ConfigError, match="prune.include/exclude"):
        prunable_parameters(m, include=["nothing.here"])


def test_embedding_kind_and_tied_weights() -> None:
    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(11, 6)
            self.head = nn.Linear(6, 11, bias=False)
            self.head.weight = self.wte.weight  # tied, nanoGPT style

    default = prunable_parameters(LM())
    assert list(default) == ["head.weight"]  # the tied weight, under its Linear's name
    infos = layer_infos(LM(), include=["*", "wte.weight"])
    assert [(i.name, i.kind) for i in infos] == [("wte.weight", "embedding")]  # counted once


def test_masks_hold_on_in_proj_through_optimizer_steps() -> None:
    m = vit()
    masks = MaskSet(prunable_parameters(m))
    name = f"{attn(1)}.in_proj_weight"
    keep = torch.rand(masks[name].shape, generator=torch.Generator().manual_seed(1)) > 0.5
    masks.update({name: keep})
    masks.apply()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for x, y in batches() * 2:
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
        masks.apply()
    w = dict(m.named_parameters())[name]
    assert bool((w[~keep] == 0).all()) and bool((w[keep] != 0).all())
    total, kept = param_counts(m, masks)
    assert total - kept == int((~keep).sum())


def test_flops_count_attention_per_projection() -> None:
    m = vit()
    masks = MaskSet(prunable_parameters(m))
    per_layer = (2 * 3 * E * E * T  # in_proj: q, k, v
                 + 2 * E * E * T  # out_proj
                 + 2 * 2 * T * T * E  # q k^T and attention x v
                 + 2 * 2 * E * MLP * T)  # MLP
    dense = 2 * 64 * E * 48 + 4 * per_layer + 2 * E * 10
    assert flops(m, IN, masks) == (dense, dense)
    masks.update({f"{attn(0)}.in_proj_weight": torch.arange(3 * E)[:, None].expand(3 * E, E)
                  >= E})  # all of q removed
    assert flops(m, IN, masks) == (dense, dense - 2 * E * E * T)
    masks.update({f"{attn(2)}.out_proj.weight": torch.zeros(E, E, dtype=torch.bool)})
    assert flops(m, IN, masks)[1] == dense - 2 * E * E * T - 2 * E * E * T
    assert torch.backends.mha.get_fastpath_enabled()  # restored


def test_effective_sparsity_follows_paths_through_attention() -> None:
    m = vit()
    with torch.no_grad():
        m.heads.head.weight.normal_()
    masks = MaskSet(prunable_parameters(m))
    conn = connectivity(m, masks, IN)
    assert conn.disconnected == 0
    rows = torch.arange(3 * E)[:, None].expand(3 * E, E)
    name = f"{attn(0)}.in_proj_weight"
    masks.update({name: rows < 2 * E})  # layer 0: every value row pruned
    conn = connectivity(m, masks, IN)
    live = conn.masks[name]
    assert not bool(live.any())  # q and k now feed nothing: on no path
    assert not bool(conn.masks[f"{attn(0)}.out_proj.weight"].any())  # its input is zero
    masks = MaskSet(prunable_parameters(m))
    masks.update({name: rows >= 2 * E})  # q and k pruned: uniform attention still passes v
    conn = connectivity(m, masks, IN)
    assert bool(conn.masks[name][2 * E:].all()) and conn.disconnected == 0


@pytest.mark.parametrize("criterion", CRITERIA.names())
def test_every_criterion_prunes_in_proj_on_the_vit(criterion: str) -> None:
    m = vit()
    masks = MaskSet(prunable_parameters(m))
    pruner = Pruner(model=m, masks=masks, criterion=criterion,
                    allocation=AllocationConfig(name="uniform"), final_sparsity=0.9,
                    batches=batches(), input_shape=IN)
    pruner.step(0.9)
    s = masks.layer_sparsity()
    for i in range(4):
        # the held head keeps its 1,280 weights: the others go a little past 0.9
        assert s[f"{attn(i)}.in_proj_weight"] == pytest.approx(0.9 * 531712 / 530432, abs=1e-4)
    assert masks.collapsed() == []
    assert pruner.excluded == ["heads.head.weight"]
    assert s["heads.head.weight"] == 0.0


@pytest.mark.parametrize("allocation", [a for a in ALLOCATIONS.names() if a != "explicit"])
def test_every_allocation_handles_attention(allocation: str) -> None:
    m = vit()
    masks = MaskSet(prunable_parameters(m))
    Pruner(model=m, masks=masks, criterion="magnitude",
           allocation=AllocationConfig(name=allocation), final_sparsity=0.9,
           batches=batches(), input_shape=IN).step(0.9)  # calibration data: OWL reads it
    assert masks.sparsity() == pytest.approx(0.9, abs=1e-5)  # the zero head counts as kept
    assert masks.layer_sparsity()[f"{attn(0)}.in_proj_weight"] > 0


def test_zero_layer_is_left_out_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    m = vit()
    assert zero_layers(MaskSet(prunable_parameters(m))) == ["heads.head.weight"]
    masks = MaskSet(prunable_parameters(m))
    pruner = Pruner(model=m, masks=masks, criterion="magnitude",
                    allocation=AllocationConfig(name="global"), final_sparsity=0.95,
                    batches=[], input_shape=IN)
    with caplog.at_level(logging.WARNING, logger="pruning_core.masking.engine"):
        pruner.step(0.5)
        pruner.step(0.95)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("heads.head.weight: every weight")
    assert bool(masks["heads.head.weight"].all())
    assert masks.sparsity() == pytest.approx(0.95, abs=1e-5)


def test_prune_zero_layers_prunes_it_first() -> None:
    assert PruneConfig().prune_zero_layers is False
    m = vit()
    masks = MaskSet(prunable_parameters(m))
    pruner = Pruner(model=m, masks=masks, criterion="magnitude",
                    allocation=AllocationConfig(name="global"), final_sparsity=0.9,
                    batches=[], input_shape=IN,
                    exclude_zero_layers=False)
    pruner.step(0.9)
    assert pruner.excluded == []
    assert "heads.head.weight" in masks.collapsed()  # |0| ranks last: the silent collapse


def test_grasp_runs_through_attention() -> None:
    m = vit()
    masks = MaskSet(prunable_parameters(m))
    pruner = Pruner(model=m, masks=masks, criterion="grasp",
                    allocation=AllocationConfig(name="global"), final_sparsity=0.9,
                    batches=batches(), input_shape=IN)
    scores = pruner.scores()
    assert all(bool(torch.isfinite(s).all()) for s in scores.values())
    assert bool(scores[f"{attn(0)}.in_proj_weight"].ne(0).any())
    pruner.step(0.9)
    assert masks.sparsity() == pytest.approx(0.9, abs=1e-5)


def test_sdpa_restored_after_grasp() -> None:
    m = vit()
    masks = MaskSet(prunable_parameters(m))
    Pruner(model=m, masks=masks, criterion="grasp",
           allocation=AllocationConfig(name="uniform"), final_sparsity=0.5,
           batches=batches(), input_shape=IN).scores()
    x = batches()[0][0]
    with torch.no_grad():
        assert torch.isfinite(m(x)).all() and not math.isnan(float(m(x).sum()))


def build_vit(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A model factory (``model.name: tests.pruning_core.test_transformer_targets:build_vit``)."""
    return torchvision.models.VisionTransformer(image_size=input_shape[-1], patch_size=8,
                                                num_layers=1, num_heads=2, hidden_dim=16,
                                                mlp_dim=32, num_classes=num_classes)


def test_a_run_reports_the_left_out_layer() -> None:
    from pruning_core.trials.experiment import run
    from pruning_core.trials.registries import load_trial_config

    cfg = load_trial_config({
        "model": {"name": "tests.pruning_core.test_transformer_targets:build_vit"},
        "data": {"name": "synthetic", "options": {"num_train": 32, "num_test": 16}},
        "train": {"epochs": 1},
        "prune": {"criterion": "magnitude", "sparsity": 0.8, "allocation": "erk"}})
    result = run(cfg)
    assert result.excluded_layers == ["heads.head.weight"]
    assert result.collapsed_layers == []
    assert result.layer_sparsity["encoder.layers.encoder_layer_0.self_attention.in_proj_weight"] \
        > 0.5
    assert result.sparsity == pytest.approx(0.8, abs=1e-3)


class FunctionalAttention(nn.Module):
    """nanoGPT-style: F.layer_norm and F.scaled_dot_product_attention called directly."""

    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.Parameter(torch.ones(4))
        self.qkv = nn.Linear(4, 12)
        self.proj = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, 4)
        x = nn.functional.layer_norm(x, (4,), self.ln)
        q, k, v = self.qkv(x).split(4, dim=-1)
        out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(out).sum(1)


def test_effective_sparsity_through_functional_attention() -> None:
    m = FunctionalAttention()
    masks = MaskSet(prunable_parameters(m))
    # normalising an all-ones token gives zeros: without the linearisation nothing is on a path
    assert connectivity(m, masks, (3, 4)).disconnected == 0
    rows = torch.arange(12)[:, None].expand(12, 4)
    masks.update({"qkv.weight": rows >= 8})  # q and k pruned: v still passes
    conn = connectivity(m, masks, (3, 4))
    assert conn.disconnected == 0 and bool(conn.masks["qkv.weight"][8:].all())
    masks = MaskSet(prunable_parameters(m))
    masks.update({"qkv.weight": rows < 8})  # v pruned: q and k feed nothing
    conn = connectivity(m, masks, (3, 4))
    assert not bool(conn.masks["qkv.weight"].any()) and not bool(conn.masks["proj.weight"].any())


def test_channel_groups_on_the_vit_are_its_mlp_neurons() -> None:
    """``granularity: channel`` on a ViT prunes MLP hidden neurons (each ``mlp.0`` row with
    its ``mlp.3`` column) and attention heads (``structured.heads``, tests in test_heads.py)."""
    from pruning_core.structured.graph import groups, is_head_group

    everything = groups(vit(), IN)
    assert sorted(g.layers[0] for g in everything if is_head_group(g)) == [attn(i)
                                                                          for i in range(4)]
    gs = [g for g in everything if not is_head_group(g)]
    assert sorted(g.layers[0] for g in gs) == [
        f"encoder.layers.encoder_layer_{i}.mlp.0" for i in range(4)]
    assert all(g.size == MLP for g in gs)
    for g in gs:
        block = g.layers[0].rsplit(".", 1)[0]
        assert {(m.module, m.role) for m in g.members} >= {(f"{block}.0", "out"),
                                                           (f"{block}.3", "in")}
