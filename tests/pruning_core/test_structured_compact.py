import copy
import json

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pruning_core.base.errors import ConfigError
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.structured import (
    STRUCTURED_CRITERIA,
    StructuredContext,
    channel_masks,
    compact,
    compact_optimizer_state,
    full_keep,
    groups,
    keep_indices,
    node_sparsity,
    rebuild,
    select_channels,
    slice_plan,
    weight_sparsity,
)
from pruning_core.workloads.models import create_model
from tests.pruning_core.structured_nets import TinyCat, TinyRes, randomise_bn

MODELS = [
    ("mlp", (1, 8, 8)),
    ("cnn1d", (1, 40)),
    ("lenet5", (1, 12, 12)),
    ("vgg11_bn", (3, 8, 8)),
    ("resnet20", (3, 8, 8)),
    ("tv:resnet18", (3, 32, 32)),
    ("tv:mobilenet_v2", (3, 32, 32)),
]


def _masked(model, masks):
    out = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in out.named_parameters():
            if n in masks:
                p.mul_(masks[n])
    return out


def _l1_keep(model, gs, sparsity):
    ctx = StructuredContext(model=model, groups=gs, keep=full_keep(gs), batches=[],
                            input_shape=(), loss_fn=F.cross_entropy,
                            generator=torch.Generator().manual_seed(0))
    return select_channels(STRUCTURED_CRITERIA.get("l1_filter")(ctx), gs, sparsity)


def _out_sizes(model):
    return {n: (m.out_features if isinstance(m, nn.Linear) else m.out_channels)
            for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d)}


@pytest.mark.parametrize(("name", "shape"), MODELS)
@pytest.mark.parametrize("sparsity", [0.5, 0.97])
def test_compact_equals_masked_in_eval_mode(name, shape, sparsity):
    torch.manual_seed(0)
    model = randomise_bn(create_model(name, shape, 10)).eval()
    gs = groups(model, shape)
    keep = _l1_keep(model, gs, sparsity)
    small = compact(model, gs, keep).eval()
    x = torch.randn(3, *shape)
    masks = channel_masks(model, gs, keep)
    with torch.no_grad():
        expected = _masked(model, masks)(x)
        got = small(x)
        dense = model(x)
    assert got.shape == (3, 10)  # the classifier's outputs never change
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(dense, expected, atol=1e-3)  # something was really removed
    assert all(v >= 1 for v in _out_sizes(small).values())  # never an empty layer
    # the compact Conv/Linear weights are exactly the weights the masks keep
    dense_w = prunable_parameters(model)
    small_w = prunable_parameters(small)
    kept = sum(int(masks[n].sum()) if n in masks else p.numel() for n, p in dense_w.items())
    assert sum(p.numel() for p in small_w.values()) == kept
    assert kept < sum(p.numel() for p in dense_w.values())
    assert node_sparsity(gs, keep) <= sparsity + 1e-9  # the floor only ever keeps more


def test_concat_compact_equals_masked():
    model = randomise_bn(TinyCat()).eval()
    gs = groups(model, (3, 4, 4))
    g = torch.Generator().manual_seed(3)
    keep = select_channels({gr.id: torch.rand(gr.size, generator=g) for gr in gs}, gs, 0.4)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(compact(model, gs, keep)(x),
                                   _masked(model, channel_masks(model, gs, keep))(x))


def test_batchnorm_without_affine_still_has_its_statistics_sliced():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6, affine=False), nn.ReLU(),
                          nn.Conv2d(6, 4, 3), nn.Flatten(), nn.Linear(16, 2))
    randomise_bn(model).eval()
    gs = groups(model, (3, 6, 6))
    keep = _l1_keep(model, gs, 0.5)
    small = compact(model, gs, keep)
    assert small[1].running_mean.shape == (small[0].out_channels,)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(small(x), _masked(model, channel_masks(model, gs, keep))(x))


def test_masks_and_sparsities_by_hand():
    model = TinyRes()
    gs = groups(model, (3, 2, 2))
    res = next(g for g in gs if sorted(g.layers) == ["conv2", "stem"])
    keep = full_keep(gs)
    keep[res.id] = torch.tensor([True, False, True, True])  # remove residual channel 1
    masks = channel_masks(model, gs, keep)
    assert set(masks) == {"stem.weight", "conv1.weight", "conv2.weight", "fc.weight"}
    assert (~masks["stem.weight"]).nonzero()[:, 0].unique().tolist() == [1]
    assert (~masks["conv2.weight"]).nonzero()[:, 0].unique().tolist() == [1]
    assert (~masks["conv1.weight"]).nonzero()[:, 1].unique().tolist() == [1]
    assert (~masks["fc.weight"]).nonzero()[:, 1].unique().tolist() == [4, 5, 6, 7]
    # removed: stem 27 + conv2 36 + conv1 36 + fc 3*4 = 111 of 108 + 144 + 144 + 48 = 444
    assert weight_sparsity(model, masks) == pytest.approx(111 / 444)
    assert node_sparsity(gs, keep) == pytest.approx(1 / 8)
    spec = keep_indices(model, gs, keep)
    assert spec["stem"] == {"out": [0, 2, 3], "out_size": 4}
    assert spec["fc"] == {"in": [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15], "in_size": 16}
    assert spec["bn0"]["out"] == [0, 2, 3]


def test_rebuild_from_stored_indices_round_trip():
    torch.manual_seed(0)
    model = randomise_bn(create_model("resnet20", (3, 8, 8), 10)).eval()
    gs = groups(model, (3, 8, 8))
    keep = _l1_keep(model, gs, 0.6)
    small = compact(model, gs, keep).eval()
    spec = json.loads(json.dumps(keep_indices(model, gs, keep)))  # plain ints: JSON-able
    fresh = create_model("resnet20", (3, 8, 8), 10)  # other weights, same architecture
    rebuilt = rebuild(fresh, spec, inplace=True).eval()
    rebuilt.load_state_dict(small.state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), small(x))
    # compaction did not touch the dense model; a mismatched architecture is refused
    assert model.stem[0].weight.shape == (16, 3, 3, 3)
    with pytest.raises(ConfigError, match=r"layer '[\w.]+' has (8|16|32) output channels, the "
                                          r"indices were saved for (16|32|64)"):
        rebuild(create_model("resnet20", (3, 8, 8), 10, width=0.5), spec)


def _train_masked_then_compact(opt_factory):
    torch.manual_seed(0)
    model = randomise_bn(TinyRes()).train()
    gs = groups(model, (3, 2, 2))
    g = torch.Generator().manual_seed(5)
    keep = select_channels({gr.id: torch.rand(gr.size, generator=g) for gr in gs}, gs, 0.5)
    params = prunable_parameters(model)
    masks = MaskSet(params, {**{n: torch.ones_like(p, dtype=torch.bool)
                                for n, p in params.items()},
                             **channel_masks(model, gs, keep)})
    masks.apply()
    opt = opt_factory(model)
    data = [(torch.randn(8, 3, 2, 2), torch.randint(0, 3, (8,))) for _ in range(2)]

    def step(net, optimizer, x, y, masks=None):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
        if masks is not None:
            masks.apply()

    step(model, opt, *data[0], masks)
    spec = keep_indices(model, gs, keep)
    small = compact(model, gs, keep)
    small_opt = compact_optimizer_state(opt, model, small, spec)
    step(model, opt, *data[1], masks)  # the masked dense model goes on
    step(small, small_opt, *data[1])  # the compact model goes on from the sliced state
    return model, small, spec, opt, small_opt


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimizer_state_carries_over_for_kept_channels(kind):
    def factory(m):
        if kind == "sgd":
            return torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        return torch.optim.Adam(m.parameters(), lr=0.01)

    model, small, spec, opt, small_opt = _train_masked_then_compact(factory)
    plan = slice_plan(model, spec)
    big = dict(model.named_parameters())
    for name, p in small.named_parameters():
        expected = big[name].detach()
        for dim, idx in plan.get(name, []):
            expected = expected.index_select(dim, idx)
        # after one more step, the compact model's weights are the masked model's kept weights
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)
        state = small_opt.state[p]
        key = "momentum_buffer" if kind == "sgd" else "exp_avg"
        assert state[key].shape == p.shape
    assert type(small_opt) is type(opt)
    assert small_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
