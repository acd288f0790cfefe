import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pruning_core.masking.criteria import CRITERIA, ScoreContext
from pruning_core.masking.targets import prunable_parameters
from pruning_core.structured import STRUCTURED_CRITERIA, StructuredContext, full_keep, groups
from tests.pruning_core.structured_nets import (
    TinyRes,
    assert_same_snapshot,
    randomise_bn,
    snapshot,
)


def _ctx(model, input_shape, batches, name, seed=0, options=None):
    gs = groups(model, input_shape)
    return StructuredContext(
        model=model, groups=gs, keep=full_keep(gs), batches=batches, input_shape=input_shape,
        loss_fn=F.cross_entropy, generator=torch.Generator().manual_seed(seed),
        options=STRUCTURED_CRITERIA.get(name).options.model_validate(options or {}),
    )


def _batches(shape, classes=3, n=2, size=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, *shape, generator=g), torch.randint(0, classes, (size,),
                                                                    generator=g))
            for _ in range(n)]


@pytest.mark.parametrize("name", STRUCTURED_CRITERIA.names())
@pytest.mark.parametrize("train_mode", [True, False])
def test_contract_leaves_model_exactly_as_found(name, train_mode):
    model = randomise_bn(TinyRes()).train(train_mode)
    model.conv1.weight.grad = torch.full_like(model.conv1.weight, 3.0)
    if name in ("snap", "l1_filter", "l2_filter", "random"):  # the weight criteria need grads
        model.stem.weight.requires_grad_(False)
    ctx = _ctx(model, (3, 2, 2), _batches((3, 2, 2)), name)
    before = snapshot(model)
    scores = STRUCTURED_CRITERIA.get(name)(ctx)
    assert_same_snapshot(before, snapshot(model))
    assert set(scores) == {g.id for g in ctx.groups}
    for g in ctx.groups:
        assert scores[g.id].shape == (g.size,) and torch.isfinite(scores[g.id]).all()


@pytest.mark.parametrize("name", STRUCTURED_CRITERIA.names())
def test_contract_deterministic(name):
    batches = _batches((3, 2, 2))
    a = STRUCTURED_CRITERIA.get(name)(_ctx(randomise_bn(TinyRes()), (3, 2, 2), batches, name))
    b = STRUCTURED_CRITERIA.get(name)(_ctx(randomise_bn(TinyRes()), (3, 2, 2), batches, name))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_snap_by_hand_on_an_mlp():
    # gate g on the hidden Linear's output (before ReLU): h = relu(g * (W1 x + b1)).
    # ∂L_b/∂g_j = mean_n [(p - onehot) W2]_nj 1[z_nj > 0] z_nj ;
    # score = |Σ_b ∂(L_b/B)/∂g| / |Σ_b L_b/B|  (SNIP-it SNAP.py: loss / iterations, norm_factor)
    model = _mlp()
    batches = _batches((4,), classes=2, n=2, size=5)
    w1, b1 = model[0].weight.detach().double(), model[0].bias.detach().double()
    w2, b2 = model[2].weight.detach().double(), model[2].bias.detach().double()
    grad, loss = torch.zeros(3, dtype=torch.float64), 0.0
    for x, y in batches:
        z = x.double() @ w1.T + b1  # (N, 3)
        logits = z.clamp(min=0) @ w2.T + b2
        p = torch.softmax(logits, 1)
        loss += -torch.log(p[torch.arange(len(y)), y]).mean().item() / 2
        p[torch.arange(len(y)), y] -= 1.0
        grad += ((p @ w2) * (z > 0) * z).mean(0) / 2
    hand = grad.abs() / abs(loss)
    ctx = _ctx(model, (4,), batches, "snap")
    (g,) = ctx.groups
    scores = STRUCTURED_CRITERIA.get("snap")(ctx)
    torch.testing.assert_close(scores[g.id].double(), hand, rtol=1e-5, atol=1e-8)


def test_snap_sums_the_gates_of_a_residual_group_in_eval_mode():
    # a hand-written forward of TinyRes with one gate per conv output (before BN), eval-mode BN
    model = randomise_bn(TinyRes()).train()
    batches = _batches((3, 2, 2), n=1)
    gates = {n: torch.ones(4, requires_grad=True) for n in ("stem", "conv1", "conv2")}
    (x, y), = batches

    def gate(t, name):
        return t * gates[name].view(1, -1, 1, 1)

    bn = model.bn0
    h = gate(F.conv2d(x, model.stem.weight, padding=1), "stem")
    h = (h - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var + bn.eps).view(
        1, -1, 1, 1) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    h = h.relu()
    r = gate(F.conv2d(h, model.conv1.weight, model.conv1.bias, padding=1), "conv1").relu()
    h = (gate(F.conv2d(r, model.conv2.weight, model.conv2.bias, padding=1), "conv2") + h).relu()
    loss = F.cross_entropy(F.linear(h.flatten(1), model.fc.weight, model.fc.bias), y)
    grads = dict(zip(gates, torch.autograd.grad(loss, list(gates.values())), strict=True))
    ctx = _ctx(model, (3, 2, 2), batches, "snap")
    scores = STRUCTURED_CRITERIA.get("snap")(ctx)
    by_layers = {tuple(sorted(g.layers)): scores[g.id] for g in ctx.groups}
    norm = loss.detach().abs()
    torch.testing.assert_close(by_layers[("conv2", "stem")],
                               (grads["stem"].abs() + grads["conv2"].abs()) / norm)
    torch.testing.assert_close(by_layers[("conv1",)], grads["conv1"].abs() / norm)


def test_filter_norms_by_hand():
    # Li et al. 2017: s_j = Σ |F_j| (l1), ‖F_j‖₂ (l2); a residual group sums its convs' filters
    model = TinyRes()
    with torch.no_grad():
        model.stem.weight.fill_(0.0)
        model.stem.weight[:, 0, 0, 0] = torch.tensor([1.0, -2.0, 3.0, -4.0])
        model.conv2.weight.fill_(0.0)
        model.conv2.weight[:, 1, 1, 1] = torch.tensor([0.5, 0.5, -0.5, 0.5])
        model.conv2.weight[0, 2, 1, 1] = 1.5  # filter 0 of conv2: |0.5| + |1.5|
    ctx = _ctx(model, (3, 2, 2), [], "l1_filter")
    res = next(g for g in ctx.groups if sorted(g.layers) == ["conv2", "stem"])
    l1 = STRUCTURED_CRITERIA.get("l1_filter")(ctx)[res.id]
    torch.testing.assert_close(l1, torch.tensor([1 + 2.0, 2 + 0.5, 3 + 0.5, 4 + 0.5]))
    l2 = STRUCTURED_CRITERIA.get("l2_filter")(ctx)[res.id]
    torch.testing.assert_close(l2, torch.tensor([1 + (0.25 + 2.25) ** 0.5, 2.5, 3.5, 4.5]))
    conv1 = next(g for g in ctx.groups if g.layers == ["conv1"])
    hand = model.conv1.weight.detach().abs().sum((1, 2, 3))
    torch.testing.assert_close(STRUCTURED_CRITERIA.get("l1_filter")(ctx)[conv1.id], hand)


def test_random_is_seeded():
    model = TinyRes()
    a = STRUCTURED_CRITERIA.get("random")(_ctx(model, (3, 2, 2), [], "random", seed=0))
    b = STRUCTURED_CRITERIA.get("random")(_ctx(model, (3, 2, 2), [], "random", seed=0))
    c = STRUCTURED_CRITERIA.get("random")(_ctx(model, (3, 2, 2), [], "random", seed=1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_channel_synflow_closed_form_on_a_linear_chain():
    # f = W2 W1 x (no bias): synflow(W1)_ij = |W1_ij| (1ᵀ|W2|)_i, synflow(W2)_ki = |W2_ki| (|W1|1)_i
    # hidden unit i removes row i of W1 and column i of W2: score_i = 2 (Σ_j|W1_ij|)(Σ_k|W2_ki|)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 3, bias=False))
    ctx = _ctx(model, (5,), [], "synflow")
    (g,) = ctx.groups
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    hand = 2 * w1.abs().sum(1) * w2.abs().sum(0)
    torch.testing.assert_close(STRUCTURED_CRITERIA.get("synflow")(ctx)[g.id].float(), hand)


@pytest.mark.parametrize("name", ["snip", "grasp"])
def test_channel_snip_grasp_sum_weight_scores_over_rows_and_columns(name):
    model = _mlp()
    batches = _batches((4,), classes=2)
    ctx = _ctx(model, (4,), batches, name)
    (g,) = ctx.groups
    params = prunable_parameters(model)
    weight = CRITERIA.get(name)(ScoreContext(
        model=model, params=params, masks={n: torch.ones_like(p, dtype=torch.bool)
                                           for n, p in params.items()},
        batches=batches, input_shape=(4,), loss_fn=F.cross_entropy,
        generator=torch.Generator().manual_seed(0),
        options=CRITERIA.get(name).options()))
    hand = weight["0.weight"].sum(1) + weight["2.weight"].sum(0)  # unit i: row i, column i
    got = STRUCTURED_CRITERIA.get(name)(ctx)[g.id]
    torch.testing.assert_close(got.float(), hand.float(), rtol=1e-5, atol=1e-7)
    if name == "snip":
        # SNIP itself, from the formula: |∂L/∂W ⊙ W| with the gradient accumulated over batches
        w = [model[0].weight, model[2].weight]
        grads = [torch.zeros_like(p) for p in w]
        for x, y in batches:
            for a, gr in zip(grads, torch.autograd.grad(F.cross_entropy(model(x), y), w),
                             strict=True):
                a.add_(gr)
        s0, s2 = ((gr * p).abs().detach() for gr, p in zip(grads, w, strict=True))
        torch.testing.assert_close(got.float(), s0.sum(1) + s2.sum(0), rtol=1e-5, atol=1e-7)
    else:
        assert STRUCTURED_CRITERIA.get(name).signed
