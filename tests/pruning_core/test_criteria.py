import pytest
import torch
from torch import nn

from pruning_core.config import AllocationConfig
from pruning_core.criteria import CRITERIA, ScoreContext
from pruning_core.engine import Pruner
from pruning_core.masks import MaskSet
from pruning_core.targets import prunable_parameters
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


def test_snip_equals_hand_computed_gradient_times_weight():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    batches = [(torch.randn(5, 4), torch.randint(0, 2, (5,))) for _ in range(2)]
    ctx = ScoreContext(model=model, params=prunable_parameters(model), masks={}, batches=batches,
                       input_shape=(4,), loss_fn=nn.functional.cross_entropy,
                       generator=torch.Generator(), options=None)
    scores = CRITERIA.get("snip")(ctx)
    ref = {n: torch.zeros_like(p) for n, p in ctx.params.items()}
    for x, y in batches:  # by hand: .backward() on a copy, |g * w| summed over batches
        clone = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
        clone.load_state_dict(model.state_dict())
        nn.functional.cross_entropy(clone(x), y).backward()
        for n in ref:
            p = clone.get_parameter(n)
            ref[n] += (p.grad * p.detach()).abs()
    for n in ref:
        torch.testing.assert_close(scores[n], ref[n])


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
                       options=CRITERIA.get("grasp").options(temperature=1.0))
    scores = CRITERIA.get("grasp")(ctx)
    torch.testing.assert_close(scores["weight"], torch.tensor([[-2.0, 4.0]]))
    masks = MaskSet(params)
    Pruner(model=model, masks=masks, criterion="grasp", allocation=AllocationConfig(),
           final_sparsity=0.5, batches=[(x, t)], input_shape=(2,), loss_fn=loss,
           criterion_options={"temperature": 1.0}).step(0.5)
    assert masks["weight"].tolist() == [[False, True]]
    assert model.weight.tolist() == [[0.0, -2.0]]


def test_random_depends_on_seed_only():
    a, crit = make_ctx(tiny_convnet(), [], "random")
    b, _ = make_ctx(tiny_convnet(), [], "random")
    b.generator.manual_seed(1)
    assert not torch.equal(crit(a)["0.weight"], crit(b)["0.weight"])
