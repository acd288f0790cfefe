import pytest
import torch
from torch import nn

from pruning_core.config import AllocationConfig
from pruning_core.masking.criteria import CRITERIA, ScoreContext
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from tests.conftest import tiny_convnet


def make_ctx(model, batches, name, options=None, masks=None):
    params = prunable_parameters(model)
    crit = CRITERIA.get(name)
    return ScoreContext(
        model=model, params=params,
        masks=masks or {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()},
        batches=batches, input_shape=(3, 8, 8), loss_fn=nn.functional.cross_entropy,
        generator=torch.Generator().manual_seed(0),
        options=crit.options.model_validate(options or {}),
    ), crit


def snapshot(model):
    return (
        {k: v.detach().clone() for k, v in model.state_dict().items()},
        {n: p.requires_grad for n, p in model.named_parameters()},
        {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        [m.training for m in model.modules()],
    )


@pytest.mark.parametrize("name", CRITERIA.names())
@pytest.mark.parametrize("train_mode", [True, False])
def test_contract_leaves_model_exactly_as_found(name, train_mode, batches):
    model = tiny_convnet()
    model.train(train_mode)
    # a .grad present before scoring must survive untouched
    model[0].weight.grad = torch.full_like(model[0].weight, 3.0)
    before = snapshot(model)
    ctx, crit = make_ctx(model, batches, name)
    scores = crit(ctx)
    after = snapshot(model)
    for k, v in before[0].items():
        assert torch.equal(v, after[0][k]), f"{name} changed {k}"
    assert before[1] == after[1] and before[3] == after[3]
    for k, g in before[2].items():
        assert (g is None and after[2][k] is None) or torch.equal(g, after[2][k])
    assert set(scores) == set(ctx.params)
    for n, s in scores.items():
        assert s.shape == ctx.params[n].shape and torch.isfinite(s).all()


@pytest.mark.parametrize("name", CRITERIA.names())
def test_contract_deterministic(name, batches):
    a, crit = make_ctx(tiny_convnet(), batches, name)
    b, _ = make_ctx(tiny_convnet(), batches, name)
    sa, sb = crit(a), crit(b)
    for n in sa:
        assert torch.equal(sa[n], sb[n])


def _softmax_regression_grad(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂/∂W of the mean cross-entropy of z = W x, from the formula: (softmax(z) − onehot) xᵀ / B."""
    z = x @ w.T  # (B, C)
    p = torch.exp(z - z.max(1, keepdim=True).values)
    p = p / p.sum(1, keepdim=True)
    p[torch.arange(len(y)), y] -= 1.0
    return p.T @ x / len(y)  # (C, D)


def _snip_ctx(model, batches, **options):
    return ScoreContext(model=model, params=prunable_parameters(model), masks={},
                        batches=batches, input_shape=(4,), loss_fn=nn.functional.cross_entropy,
                        generator=torch.Generator(),
                        options=CRITERIA.get("snip").options(**options))


def test_snip_is_abs_of_accumulated_gradient_times_weight_by_hand():
    # SNIP (Lee et al. 2019, eq. 6 with c = 1): s = |g ⊙ θ|, g accumulated over batches first
    torch.manual_seed(0)
    model = nn.Linear(4, 3, bias=False)
    w = model.weight.detach().double()
    batches = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(2)]
    grads = [_softmax_regression_grad(w, x.double(), y) for x, y in batches]
    scores = CRITERIA.get("snip")(_snip_ctx(model, batches))
    torch.testing.assert_close(scores["weight"].double(), ((grads[0] + grads[1]) * w).abs(),
                               rtol=1e-5, atol=1e-7)
    # the per-batch estimator sums |g_b ⊙ θ| instead; on this data the two differ
    per_batch = CRITERIA.get("snip")(_snip_ctx(model, batches, estimator="per_batch"))
    hand = (grads[0] * w).abs() + (grads[1] * w).abs()
    torch.testing.assert_close(per_batch["weight"].double(), hand, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(hand, ((grads[0] + grads[1]) * w).abs())


def test_snip_scores_in_eval_mode_by_default():
    # Linear -> BatchNorm1d -> Linear with non-trivial running statistics: eval mode normalises
    # with them, train mode with the batch's; the hand formula uses the running ones.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3),
                          nn.Linear(3, 2, bias=False))
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
        bn.weight.copy_(torch.tensor([1.5, 0.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    model.train()  # the incoming mode must not matter
    x, y = torch.randn(6, 4), torch.randint(0, 2, (6,))
    w1 = model[0].weight.detach().clone().requires_grad_()
    w2 = model[2].weight.detach().clone().requires_grad_()
    h = (x @ w1.T - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight.detach() \
        + bn.bias.detach()
    loss = nn.functional.cross_entropy(h @ w2.T, y)
    g1, g2 = torch.autograd.grad(loss, [w1, w2])
    scores = CRITERIA.get("snip")(_snip_ctx(model, [(x, y)]))
    torch.testing.assert_close(scores["0.weight"], (g1 * w1).abs().detach())
    torch.testing.assert_close(scores["2.weight"], (g2 * w2).abs().detach())
    train_mode = CRITERIA.get("snip")(_snip_ctx(model, [(x, y)], mode="train"))
    assert not torch.allclose(train_mode["0.weight"], scores["0.weight"])
    assert model.training  # left as found


def test_synflow_equals_closed_form_on_linear_chain():
    # f(x) = W2 W1 x; R = 1ᵀ|W2||W1|1
    # ⇒ score1[i,j] = |W1_ij|·(1ᵀ|W2|)_i and score2[k,i] = |W2_ki|·(|W1|1)_i
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4, bias=False), nn.Linear(4, 3, bias=False))
    w1, w2 = model[0].weight.detach(), model[1].weight.detach()
    ctx = ScoreContext(model=model, params=prunable_parameters(model), masks={}, batches=[],
                       input_shape=(5,), loss_fn=nn.functional.cross_entropy,
                       generator=torch.Generator(),
                       options=CRITERIA.get("synflow").options())
    scores = CRITERIA.get("synflow")(ctx)
    col = w2.abs().sum(0)  # (4,)
    row = w1.abs().sum(1)  # (4,)
    torch.testing.assert_close(scores["0.weight"], w1.abs() * col[:, None])
    torch.testing.assert_close(scores["1.weight"], w2.abs() * row[None, :])


def test_synflow_falls_back_to_float64_on_overflow():
    # 12 layers of weight 1e4 overflow float32 (1e48); float64 keeps finite scores
    model = nn.Sequential(*[nn.Linear(2, 2, bias=False) for _ in range(12)])
    with torch.no_grad():
        for m in model:
            m.weight.fill_(1e4)
    ctx = ScoreContext(model=model, params=prunable_parameters(model), masks={}, batches=[],
                       input_shape=(2,), loss_fn=nn.functional.cross_entropy,
                       generator=torch.Generator(), options=CRITERIA.get("synflow").options())
    scores = CRITERIA.get("synflow")(ctx)
    assert all(torch.isfinite(s).all() and (s > 0).all() for s in scores.values())
    assert next(iter(scores.values())).dtype == torch.float64
    ctx.options = CRITERIA.get("synflow").options(precision="float32")
    assert not all(torch.isfinite(s).all() for s in CRITERIA.get("synflow")(ctx).values())


def test_synflow_overflow_selection_equals_float64_reference():
    # a 12-layer linear chain with weights ~1e3..1e4 overflows float32 (R ~ 1e46); the kept set
    # must be the one a float64 ranking of the closed-form scores gives, not ties by position
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(*[nn.Linear(4, 4, bias=False) for _ in range(12)])
    with torch.no_grad():
        for m in model:
            m.weight.copy_(1e3 + 9e3 * torch.rand(4, 4, generator=gen))
    ws = [m.weight.detach().double().abs() for m in model]
    ones = torch.ones(4, dtype=torch.float64)
    refs = []
    for i, w in enumerate(ws):  # score_l[a,b] = |W_l[a,b]| (1ᵀ|W_L|..|W_l+1|)_a (|W_l-1|..|W_1|1)_b
        left, right = ones.clone(), ones.clone()
        for u in reversed(ws[i + 1:]):
            left = left @ u
        for u in ws[:i]:
            right = u @ right
        refs.append(w * left[:, None] * right[None, :])
    flat = torch.cat([r.flatten() for r in refs]).numpy()
    assert not torch.isfinite(torch.from_numpy(flat).float()).all()
    keep = 40
    order = flat.argsort(kind="stable")[::-1][:keep]
    expected = torch.zeros(flat.size, dtype=torch.bool)
    expected[torch.from_numpy(order.copy())] = True
    masks = MaskSet(prunable_parameters(model))
    Pruner(model=model, masks=masks, criterion="synflow", allocation=AllocationConfig(),
           final_sparsity=1 - keep / flat.size, batches=[], input_shape=(4,)
           ).step(1 - keep / flat.size)
    got = torch.cat([masks[f"{i}.weight"].flatten() for i in range(12)])
    assert torch.equal(got, expected)


def test_grasp_sign_on_hand_checked_case():
    # f(w) = ½(w·x − t)², w = [1, −2], x = [1, 1], t = 0: y = −1, g = (y−t)x = [−1, −1],
    # H = xxᵀ, Hg = [−2, −2]. Official GraSP removes the highest −θ⊙Hg = [2, −4], i.e. weight 0;
    # our keep score θ⊙Hg = [−2, 4] keeps weight 1.
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0]]))
    x, t = torch.tensor([[1.0, 1.0]]), torch.tensor([0.0])

    def loss(out, y):
        return 0.5 * ((out.squeeze(1) - y) ** 2).sum()

    params = prunable_parameters(model)
    ctx = ScoreContext(model=model, params=params, masks={}, batches=[(x, t)], input_shape=(2,),
                       loss_fn=loss, generator=torch.Generator(),
                       options=CRITERIA.get("grasp").options(temperature=1.0,
                                                                   reinit_linear=False))
    scores = CRITERIA.get("grasp")(ctx)
    torch.testing.assert_close(scores["weight"], torch.tensor([[-2.0, 4.0]]))
    masks = MaskSet(params)
    Pruner(model=model, masks=masks, criterion="grasp", allocation=AllocationConfig(),
           final_sparsity=0.5, batches=[(x, t)], input_shape=(2,), loss_fn=loss,
           criterion_options={"temperature": 1.0, "reinit_linear": False}).step(0.5)
    assert masks["weight"].tolist() == [[False, True]]
    assert model.weight.tolist() == [[0.0, -2.0]]


def _grasp_scores(model, batches, generator_seed=0, **options):
    params = prunable_parameters(model)
    ctx = ScoreContext(model=model, params=params,
                       masks={n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()},
                       batches=batches, input_shape=(3, 8, 8), loss_fn=nn.functional.cross_entropy,
                       generator=torch.Generator().manual_seed(generator_seed),
                       options=CRITERIA.get("grasp").options(**options))
    return CRITERIA.get("grasp")(ctx)


def test_grasp_reinit_linear_scores_with_fresh_xavier_weights(batches):
    # official GraSP (reinit=True) re-draws every Linear weight before scoring: the scores are
    # then independent of the Linear layers' current values, and the conv scores change too
    a, b = tiny_convnet(), tiny_convnet()
    with torch.no_grad():
        b[8].weight.mul_(-3.0)
        b[10].weight.add_(1.0)
    sa, sb = _grasp_scores(a, batches), _grasp_scores(b, batches)
    for n in sa:
        torch.testing.assert_close(sa[n], sb[n])
    plain = _grasp_scores(a, batches, reinit_linear=False)
    assert not torch.allclose(plain["0.weight"], sa["0.weight"])
    assert not torch.allclose(_grasp_scores(a, batches, reinit_linear=False)["0.weight"],
                              _grasp_scores(b, batches, reinit_linear=False)["0.weight"])


def test_grasp_xavier_draw_has_the_glorot_std():
    from pruning_core.masking.criteria.grasp import xavier_normal

    w = xavier_normal(torch.Size([300, 500]), torch.Generator().manual_seed(0))
    assert w.std().item() == pytest.approx((2.0 / 800) ** 0.5, rel=0.02)
    assert abs(w.mean().item()) < 1e-3


def test_grasp_mode_default_train_and_eval_option(batches):
    model = tiny_convnet().eval()
    train = _grasp_scores(model, batches)
    model.train()
    assert all(torch.equal(train[n], v) for n, v in _grasp_scores(model, batches).items())
    ev = _grasp_scores(model, batches, mode="eval")
    assert not torch.allclose(ev["0.weight"], train["0.weight"])


def test_random_depends_on_seed_only():
    a, crit = make_ctx(tiny_convnet(), [], "random")
    b, _ = make_ctx(tiny_convnet(), [], "random")
    b.generator.manual_seed(1)
    assert not torch.equal(crit(a)["0.weight"], crit(b)["0.weight"])


def test_magnitude_is_the_absolute_weight_and_random_is_uniform_by_hand():
    model = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-3.0, 0.5, 0.0], [2.0, -0.25, 1.0]]))
    ctx = ScoreContext(model=model, params=prunable_parameters(model), masks={}, batches=[],
                       input_shape=(3,), loss_fn=nn.functional.cross_entropy,
                       generator=torch.Generator().manual_seed(5), options=None)
    assert CRITERIA.get("magnitude")(ctx)["weight"].tolist() == [[3.0, 0.5, 0.0],
                                                                 [2.0, 0.25, 1.0]]
    # random: i.i.d. U[0, 1) draws of the run's generator, in the weight's shape
    expected = torch.rand((2, 3), generator=torch.Generator().manual_seed(5))
    assert torch.equal(CRITERIA.get("random")(ctx)["weight"], expected)
