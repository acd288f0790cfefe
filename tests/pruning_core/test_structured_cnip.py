"""CNIP: weights (SNIP elasticity) and nodes (SNAP) ranked together, as SNIP-it's CNIP.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from pruning_core.structured import STRUCTURED_CRITERIA, StructuredContext, full_keep
from pruning_core.structured.pruner import ChannelPruner
from pruning_core.trials.experiment import Trial, run
from pruning_core.trials.registries import load_trial_config


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(),
                         nn.Linear(4, 3))


@pytest.mark.parametrize("sparsity", [0.6, 0.8])  # 0.8: the threshold falls among node scores
def test_one_threshold_over_weight_and_node_elasticities(sparsity: float) -> None:
    model = _mlp()
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen))
               for _ in range(2)]
    reference = copy.deepcopy(model)
    pruner = ChannelPruner.for_model(model, (6,), ["*"], [], criterion="cnip",
                                     batches=batches)
    # by hand: SNIP elasticity |mean grad * w| / |mean loss| (eval mode, batch-mean loss)
    reference.eval()
    loss = sum(nn.functional.cross_entropy(reference(x), y) for x, y in batches) / 2
    names = ["1.weight", "3.weight", "5.weight"]
    params = [reference.get_parameter(n) for n in names]
    grads = torch.autograd.grad(loss, params)
    w_scores = {n: (g * p).abs().detach() / loss.detach().abs()
                for n, g, p in zip(names, grads, params, strict=True)}
    # nodes: SNAP on the same untouched network
    ctx = StructuredContext(model=reference, groups=pruner.groups, keep=full_keep(pruner.groups),
                            batches=batches, input_shape=(6,),
                            loss_fn=nn.functional.cross_entropy,
                            generator=torch.Generator(), options=None)
    node = STRUCTURED_CRITERIA.get("snap")(ctx)
    flat_nodes = np.concatenate([node[g.id].double().numpy() for g in pruner.groups])
    flat_w = np.concatenate([w_scores[n].double().flatten().numpy() for n in names])
    every = np.concatenate([flat_nodes, flat_w])
    keep_n = len(every) - round(sparsity * len(every))
    threshold = np.sort(every)[::-1][keep_n - 1]

    pruner.step(sparsity)

    node_kept = np.concatenate([pruner.keep[g.id].numpy() for g in pruner.groups])
    expected_nodes = flat_nodes >= threshold
    sizes = [g.size for g in pruner.groups]
    assert all(part.any() for part in np.split(expected_nodes, np.cumsum(sizes)[:-1]))  # no floor
    assert (node_kept == expected_nodes).all()
    # a weight survives only if it is above the threshold *and* its units survive
    from pruning_core.structured import channel_masks

    units = channel_masks(model, pruner.groups, pruner.keep)
    for n in names:
        expected = (w_scores[n] >= threshold) & units[n]
        assert torch.equal(pruner.masks[n], expected), n
    (first,) = [g for g in pruner.groups if g.layers == ["1"]]
    removed_units = [i for i, k in enumerate(pruner.keep[first.id].tolist()) if not k]
    assert removed_units  # 60 % of everything goes: some first-layer units among it
    assert not pruner.masks["1.weight"][removed_units].any()
    assert not pruner.masks["3.weight"][:, removed_units].any()


def _cfg(**prune: object):
    return load_trial_config({
        "seed": 0, "model": {"name": "mlp", "options": {"hidden": [32, 16]}},
        "data": {"name": "digits", "batch_size": 64, "train_limit": 256, "test_limit": 120},
        "train": {"epochs": 2, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
        "prune": {"granularity": "channel", "criterion": "cnip", "sparsity": 0.7, **prune},
    })


def test_cnip_prunes_weights_inside_kept_channels_and_they_stay_zero_after_compaction() -> None:
    t = Trial(_cfg())
    for a in t.plan:
        t.execute(a, None)
    assert t.compacted and len(t.compact_masks) > 0  # unstructured zeros inside kept channels
    for n, m in t.compact_masks.masks.items():
        assert (t.model.get_parameter(n)[~m] == 0).all(), n  # still zero after training
    masked = Trial(_cfg(compact=False))
    for a in masked.plan:
        masked.execute(a, None)
    x = torch.stack([t.data.test[i][0] for i in range(40)])
    t.model.eval(), masked.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(t.model(x), masked.model(x), rtol=1e-4, atol=1e-5)
    r = run(_cfg())
    assert r.status == "ok" and 0 < r.node_sparsity < 0.7 < r.sparsity
    assert r.params_kept < r.params
