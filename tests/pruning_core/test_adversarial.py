"""Adversarial accuracy (pruning_core/adversarial.py) against hand-computed attacks.

Linear models make the attacks computable by hand: with two classes and logits ``W x + b``,
the cross-entropy gradient for label 0 is ``p1 (W[1] - W[0])`` (``p1`` > 0), so FGSM's step is
``eps * sign(W[1] - W[0])`` whatever the softmax; the smallest L2 perturbation that flips an
example (what Carlini-Wagner finds) is its logit margin over ``||W[0] - W[1]||``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from pruning_core.config import AdversarialConfig
from pruning_core.measure.adversarial import (
    CW_STEPS,
    AttackSettings,
    adversarial_accuracy,
    attack_batch,
    input_bounds,
    resolve,
    seeded_subset,
)

CPU = torch.device("cpu")


def _linear(weight: list[list[float]], bias: list[float]) -> nn.Linear:
    lin = nn.Linear(len(weight[0]), len(weight))
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(weight))
        lin.bias.copy_(torch.tensor(bias))
    return lin


# W[1] - W[0] = (-3, 2): FGSM moves label-0 examples by eps_x * (-1, +1), label-1 by (+1, -1)
W, B = [[2.0, -1.0], [-1.0, 1.0]], [0.0, 0.0]
X = torch.tensor([[0.5, 0.2], [0.3, 0.3], [0.7, 0.9], [-0.7, -0.9], [0.0, 0.5], [-0.5, 0.5]])
Y = torch.tensor([0, 0, 0, 1, 0, 1])
# bounds (-1, 1): range 2, so eps 0.1 (range units) is 0.2 in input units
X_FGSM = torch.tensor([[0.3, 0.4],  # logits (0.2, 0.1): still 0, robust
                       [0.1, 0.5],  # (-0.3, 0.4): flipped
                       [0.5, 1.0],  # 1.1 clamped to 1.0; (0.0, 0.5): flipped
                       [-0.5, -1.0],  # -1.1 clamped; (0.0, -0.5): flipped
                       [-0.2, 0.7],  # clean logits (-0.5, 0.5): wrong before the attack
                       [-0.3, 0.3]])  # (-0.9, 0.6): still 1, robust
ROBUST = torch.tensor([True, False, False, False, False, True])


def test_fgsm_step_is_the_hand_computed_one_clamped_to_the_bounds() -> None:
    s = resolve(AdversarialConfig(attack="fgsm", eps=0.1))
    x_adv, clean, robust = attack_batch(_linear(W, B), X, Y, s, (-1.0, 1.0))
    torch.testing.assert_close(x_adv, X_FGSM, atol=1e-6, rtol=0)
    assert clean.tolist() == [True] * 4 + [False, True]
    assert robust.tolist() == ROBUST.tolist()
    r = adversarial_accuracy(_linear(W, B), TensorDataset(X, Y), AdversarialConfig(
        attack="fgsm", eps=0.1, samples=6), seed=0, device=CPU, bounds=(-1.0, 1.0))
    assert (r.clean_accuracy, r.adv_accuracy, r.samples) == (5 / 6, 2 / 6, 6)
    assert r.settings == {"attack": "fgsm", "norm": "linf", "eps": 0.1, "steps": 1,
                          "step_size": 0.1, "samples": 6, "library": "foolbox 3.3.4"}


def test_l2_fgm_moves_each_example_eps_along_the_normalised_gradient() -> None:
    # sign-free: step = eps_x * (W[1] - W[0]) / ||W[1] - W[0]|| = 0.2 * (-3, 2) / sqrt(13)
    s = resolve(AdversarialConfig(attack="fgsm", norm="l2", eps=0.1))
    x_adv, _, _ = attack_batch(_linear(W, B), X[:2], Y[:2], s, (-1.0, 1.0))
    step = 0.2 * torch.tensor([-3.0, 2.0]) / 13**0.5
    torch.testing.assert_close(x_adv, X[:2] + step, atol=1e-6, rtol=0)


def test_per_channel_bounds_scale_eps_per_channel_and_clamp() -> None:
    # 2 channels x 3 positions, logits = sum of channel 0 minus sum of channel 1 (label 0):
    # FGSM lowers channel 0 and raises channel 1 by eps * (hi_c - lo_c) = 0.25 * (2, 4)
    model = nn.Sequential(nn.Flatten(), _linear([[1.0] * 3 + [-1.0] * 3, [0.0] * 6], [0, 0]))
    x = torch.tensor([[[0.9, 0.0, -0.8], [1.0, 2.5, 3.3]]])
    s = resolve(AdversarialConfig(attack="fgsm", eps=0.25))
    x_adv, _, _ = attack_batch(model, x, torch.tensor([0]), s, ((-1.0, 0.0), (1.0, 4.0)))
    want = torch.tensor([[[0.4, -0.5, -1.0], [2.0, 3.5, 4.0]]])  # -1.3, 4.3 clamped
    torch.testing.assert_close(x_adv, want, atol=1e-6, rtol=0)


def _teacher_batch(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A random MLP and 64 inputs it labels itself (clean accuracy 1)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4))
    x = torch.rand(64, 10, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


# step_size = eps (large steps that overshoot): PGD's last iterate alone gets *more* accurate
# with more steps on one of these seeds; counting every iterate it cannot
@pytest.mark.parametrize("norm,eps,step_size", [("linf", 0.05, None), ("l2", 0.15, None),
                                                ("l2", 0.15, 0.15)])
def test_pgd_with_more_steps_never_raises_accuracy(norm: str, eps: float,
                                                   step_size: float | None) -> None:
    for seed in range(3):
        model, x, y = _teacher_batch(seed)
        data = TensorDataset(x, y)
        accs = [adversarial_accuracy(model, data, AdversarialConfig(
            attack="pgd", norm=norm, eps=eps, step_size=step_size, steps=k, samples=64),
            seed=seed, device=CPU, bounds=(0.0, 1.0)).adv_accuracy for k in (1, 2, 4, 8, 16)]
        assert all(b <= a for a, b in itertools.pairwise(accs)), accs
        assert accs[-1] < accs[0] < 1.0  # not vacuous: the attack works, more steps find more


def _trained_logistic() -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    """Two overlapping Gaussian blobs in 2-D, a logistic regression trained on them."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 2
    x = torch.randn(96, 2, generator=g) * 0.6 + (y[:, None] * 2 - 1) * torch.tensor([0.8, 0.3])
    torch.manual_seed(0)
    lin = nn.Linear(2, 2)
    opt = torch.optim.Adam(lin.parameters(), lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(lin(x), y).backward()
        opt.step()
    return lin, x, y


def test_carlini_wagner_finds_the_hand_computed_distance_to_the_boundary() -> None:
    lin, x, y = _trained_logistic()
    with torch.no_grad():
        logits = lin(x)
        correct = logits.argmax(1) == y
        # distance to the decision boundary: |margin| / ||W[0] - W[1]||
        dist = (logits[:, 0] - logits[:, 1]).abs() / (lin.weight[0] - lin.weight[1]).norm()
    eps_x, lo, hi = 0.5, -10.0, 10.0  # wide box: the boundary is never outside it
    expect = correct & (dist > eps_x)
    sure = (dist - eps_x).abs() > 0.02  # examples within 0.02 of eps may go either way
    r = adversarial_accuracy(lin, TensorDataset(x, y), AdversarialConfig(
        attack="carlini_wagner", eps=eps_x / (hi - lo), steps=100, samples=96), seed=0,
        device=CPU, bounds=(lo, hi))
    assert r.clean_accuracy == correct.sum().item() / 96 > 0.9
    assert r.adv_accuracy < r.clean_accuracy - 0.1  # the attack costs accuracy
    lo_hand = (expect & sure).sum().item() / 96
    hi_hand = (expect | ~sure).sum().item() / 96
    assert lo_hand <= r.adv_accuracy <= hi_hand
    assert r.settings["norm"] == "l2" and r.settings["steps"] == 100
    # every returned example lies within eps of its input or flips it at the hand distance
    s = resolve(AdversarialConfig(attack="carlini_wagner", eps=eps_x / (hi - lo), steps=100))
    x_adv, _, robust = attack_batch(lin, x, y, s, (lo, hi))
    moved = (x_adv - x).norm(dim=1)
    assert bool((moved <= eps_x + 1e-4).all())
    flipped = correct & ~robust
    torch.testing.assert_close(moved[flipped], dist[flipped], atol=0.01, rtol=0)


@pytest.mark.parametrize("attack,norm", [("fgsm", "linf"), ("pgd", "linf"), ("pgd", "l2"),
                                         ("carlini_wagner", "l2")])
def test_adversarial_examples_stay_inside_the_bounds(attack: str, norm: str) -> None:
    model, x, y = _teacher_batch(0)
    x = x * 2 - 0.5  # [-0.5, 1.5]: many inputs at distance < eps from the bounds
    lo, hi = float(x.min()), float(x.max())
    steps = 20 if attack == "carlini_wagner" else None
    s = resolve(AdversarialConfig(attack=attack, norm=norm, eps=0.5, steps=steps))
    x_adv, _, robust = attack_batch(model, x, y, s, (lo, hi))
    assert float(x_adv.min()) >= lo and float(x_adv.max()) <= hi
    assert bool(((x_adv == lo) | (x_adv == hi)).any()) or attack == "carlini_wagner"
    assert not bool(robust.all())


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(),
                                      nn.Dropout(0.5))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                  + len(m._backward_pre_hooks) for m in model.modules()],
    }


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "carlini_wagner"])
def test_the_model_and_the_callers_rng_are_left_as_they_were(attack: str) -> None:
    torch.manual_seed(0)
    model = _Model().train()
    model.features[1].eval()  # a frozen BatchNorm inside a training model: modes are per module
    model.head.bias.requires_grad_(False)
    model.head.weight.grad = torch.ones_like(model.head.weight)  # a gradient left by training
    before = _snapshot(model)
    data = TensorDataset(torch.randn(40, 6), torch.randint(0, 3, (40,)))
    rng = torch.get_rng_state()
    cfg = AdversarialConfig(attack=attack, steps=5 if attack != "fgsm" else None, samples=32)
    adversarial_accuracy(model, data, cfg, seed=3, device=CPU, batch_size=16)
    after = _snapshot(model)
    assert after["modes"] == before["modes"] and after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"] == [0] * len(after["hooks"])
    for k, v in before["state"].items():  # weights and BatchNorm running statistics
        assert torch.equal(after["state"][k], v), k
    assert after["grads"][0] is None and after["grads"][1] is None
    assert torch.equal(after["grads"][4], torch.ones(3, 8)) and after["grads"][5] is None
    assert torch.equal(torch.get_rng_state(), rng)


class _ListDataset(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def test_the_subset_depends_on_the_seed_only() -> None:
    x = torch.arange(100.0)[:, None]
    data = TensorDataset(x, torch.arange(100) % 3)
    a, ya = seeded_subset(data, 20, seed=7)
    torch.manual_seed(123)  # the global RNG plays no part
    b, yb = seeded_subset(_ListDataset(*data.tensors), 20, seed=7)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert len(set(a.flatten().tolist())) == 20  # distinct examples
    assert not torch.equal(seeded_subset(data, 20, seed=8)[0], a)
    assert len(seeded_subset(data, 500, seed=7)[0]) == 100  # more than there is: all of it
    # and the figures repeat: the same subset and the same PGD random start
    model, xs, ys = _teacher_batch(1)
    cfg = AdversarialConfig(attack="pgd", eps=0.03, samples=48)
    runs = [adversarial_accuracy(model, TensorDataset(xs, ys), cfg, seed=5, device=CPU,
                                 bounds=(0.0, 1.0)) for _ in range(2)]
    assert runs[0].adv_accuracy == runs[1].adv_accuracy and runs[0].samples == 48


def test_input_bounds_of_the_built_in_normalisations() -> None:
    x = TensorDataset(torch.tensor([[-2.0, 3.0], [1.0, 0.5]]), torch.tensor([0, 1]))
    lo, hi = input_bounds(x, "mnist")
    assert lo == pytest.approx(-0.1307 / 0.3081) and hi == pytest.approx(0.8693 / 0.3081)
    assert input_bounds(x, "mnist", normalize=False) == (0.0, 1.0)
    assert input_bounds(x, "digits") == (0.0, 1.0)
    lo, hi = input_bounds(x, "cifar10")
    assert lo == pytest.approx((-0.4914 / 0.2470, -0.4822 / 0.2435, -0.4465 / 0.2616))
    assert hi == pytest.approx((0.5086 / 0.2470, 0.5178 / 0.2435, 0.5535 / 0.2616))
    assert input_bounds(x, "mnist1d") == (-2.0, 3.0)  # no natural range: the data's
    assert input_bounds(_ListDataset(*x.tensors)) == (-2.0, 3.0)


def test_defaults_follow_hydra_and_snip_it() -> None:
    assert resolve(AdversarialConfig()) == AttackSettings("pgd", "linf", 8 / 255, 10, 2 / 255)
    assert resolve(AdversarialConfig(norm="l2")) == AttackSettings("pgd", "l2", 0.5, 10, 0.125)
    assert resolve(AdversarialConfig(attack="carlini_wagner")) == AttackSettings(
        "carlini_wagner", "l2", 0.5, CW_STEPS, 0.01)
    assert CW_STEPS == 10_000
    assert resolve(AdversarialConfig(attack="fgsm", steps=7)).steps == 1


def test_a_model_on_another_device_is_refused() -> None:
    with pytest.raises(ValueError, match="move it there first"):
        adversarial_accuracy(nn.Linear(2, 2), TensorDataset(X, Y), AdversarialConfig(),
                             seed=0, device=torch.device("meta"))
