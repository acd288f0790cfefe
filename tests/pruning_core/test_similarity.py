"""Layer similarity: invariances, agreement with from-the-formula numpy references, streaming,
capture hygiene and bad input. References below are written from the papers' formulas (explicit
centring matrix H, Song et al.'s HSIC₁, CCA by covariance whitening), not from the library."""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import pytest
import torch
from torch import nn

from pruning_core.base.errors import ConfigError
from pruning_core.similarity import (
    METHODS,
    MinibatchCKA,
    StreamingCKA,
    as_examples,
    capture_activations,
    compare_models,
    debiased_cka,
    default_pairs,
    linear_cka,
    minibatch_cka,
    pwcca,
    similarity_matrix,
    svcca,
)
from pruning_core.similarity.cka import _gram_fro2

TOL = 1e-6


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small matrices: one thread is fastest, and spares the shared cores (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- references
def ref_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. 2019: HSIC(K, L) = tr(KHLH) / (n-1)², H = I - 11ᵀ/n."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T

    def hsic(a: np.ndarray, b: np.ndarray) -> float:
        return np.trace(a @ h @ b @ h) / (n - 1) ** 2

    return hsic(k, l_) / math.sqrt(hsic(k, k) * hsic(l_, l_))


def ref_hsic1(k: np.ndarray, l_: np.ndarray) -> float:
    """Song et al. 2012, unbiased HSIC, on uncentred Grams."""
    n = k.shape[0]
    kt, lt = k - np.diag(np.diag(k)), l_ - np.diag(np.diag(l_))
    one = np.ones(n)
    return (
        np.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * one @ kt @ lt @ one
    ) / (n * (n - 3))


def ref_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    k, l_ = x @ x.T, y @ y.T
    return ref_hsic1(k, l_) / math.sqrt(ref_hsic1(k, k) * ref_hsic1(l_, l_))


def ref_svd_reduce(x: np.ndarray, keep: float) -> np.ndarray:
    """Raghu et al. 2017: centre, keep the top directions explaining `keep` of the variance."""
    xc = x - x.mean(0)
    u, s, _ = np.linalg.svd(xc, full_matrices=False)
    frac = np.cumsum(s**2) / np.sum(s**2)
    k = int(np.argmax(frac >= keep - 1e-12)) + 1
    return u[:, :k] * s[:k]


def ref_cca(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hotelling's CCA by whitening: rho = svals(Sxx^-1/2 Sxy Syy^-1/2); returns (rho,
    canonical variates of x as unit columns, centred x)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    sxx, syy, sxy = xc.T @ xc, yc.T @ yc, xc.T @ yc

    def inv_sqrt(m: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(m)
        return v @ np.diag(w**-0.5) @ v.T

    wx, wy = inv_sqrt(sxx), inv_sqrt(syy)
    u, rho, _ = np.linalg.svd(wx @ sxy @ wy)
    m = min(x.shape[1], y.shape[1])
    h = xc @ wx @ u[:, :m]
    return rho[:m], h / np.linalg.norm(h, axis=0), xc


def ref_svcca(x: np.ndarray, y: np.ndarray, keep: float = 0.99) -> float:
    return float(ref_cca(ref_svd_reduce(x, keep), ref_svd_reduce(y, keep))[0].mean())


def ref_pwcca(x: np.ndarray, y: np.ndarray) -> float:
    """Morcos et al. 2018: alpha_i = sum_j |<h_i, x_j>|, normalised; sum alpha_i rho_i."""
    rho, h, xc = ref_cca(x, y)
    alpha = np.abs(h.T @ xc).sum(axis=1)
    return float((alpha / alpha.sum()) @ rho)


# ----------------------------------------------------------------------------- data
def related(n: int, p: int, q: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """y = nonlinear mix of x plus noise, with non-zero means (centring matters)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) + 2.0
    y = np.tanh(x @ rng.normal(size=(p, q)) / math.sqrt(p)) + 0.5 * rng.normal(size=(n, q)) - 1
    return x, y


def random_orthogonal(p: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(p, p)))
    return q * np.sign(np.diag(r))


def ill_conditioned(p: int, seed: int) -> np.ndarray:
    """Invertible, far from orthogonal: singular values 1 ... 1e-3."""
    return random_orthogonal(p, seed) @ np.diag(np.logspace(0, -3, p)) @ random_orthogonal(
        p, seed + 1
    )


SIMS = {
    "cka": linear_cka,
    "debiased_cka": debiased_cka,
    "svcca": svcca,
    "pwcca": pwcca,
    "minibatch_cka": lambda x, y: minibatch_cka(x, y, batch_size=50),
}


# ----------------------------------------------------------------------------- identity
@pytest.mark.parametrize("name", sorted(SIMS))
def test_identity_gives_one(name: str) -> None:
    x, _ = related(200, 12, 5)
    assert SIMS[name](x, x) == pytest.approx(1.0, abs=1e-9)


def test_every_registered_method_gives_one_for_a_model_against_itself() -> None:
    model, batches = mlp(0), inputs(3, 128, 64)
    for name in METHODS:
        res = compare_models(model, model, batches, method=name)
        assert list(res) == [("0", "0"), ("2", "2"), ("4", "4")]
        assert all(v == pytest.approx(1.0, abs=1e-9) for v in res.values()), name


# ----------------------------------------------------------------------------- invariances
def test_cka_invariant_to_orthogonal_maps_and_isotropic_scaling() -> None:
    x, y = related(300, 10, 6)
    base = linear_cka(x, y)
    assert linear_cka(x @ random_orthogonal(10, 3), y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(x, 7.5 * y @ random_orthogonal(6, 4)) == pytest.approx(base, abs=1e-10)
    assert linear_cka(0.01 * x, y) == pytest.approx(base, abs=1e-10)
    assert debiased_cka(3 * x @ random_orthogonal(10, 5), y) == pytest.approx(
        debiased_cka(x, y), abs=1e-10
    )


def test_cka_not_invariant_to_an_arbitrary_invertible_map() -> None:
    x, _ = related(300, 10, 6)
    a = ill_conditioned(10, 7)
    assert np.linalg.matrix_rank(a) == 10
    assert linear_cka(x, x @ a) < 0.9  # same information, different geometry


def test_svcca_invariant_to_invertible_linear_maps() -> None:
    x, y = related(300, 10, 6)
    a, b = ill_conditioned(10, 8), ill_conditioned(6, 9)
    base = svcca(x, y, keep_variance=1.0)
    assert base < 0.95
    assert svcca(x @ a, y @ b, keep_variance=1.0) == pytest.approx(base, abs=1e-7)
    assert svcca(x, x @ a, keep_variance=1.0) == pytest.approx(1.0, abs=1e-7)
    # with truncation: data of rank 4 in 10 dims keeps its 4-dim subspace under any map
    rng = np.random.default_rng(1)
    low = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 10))
    assert svcca(low, low @ a, keep_dims=4) == pytest.approx(1.0, abs=1e-7)


# ----------------------------------------------------------------------------- references
@pytest.mark.parametrize(("n", "p", "q"), [(120, 8, 5), (30, 40, 60)])  # feature / Gram paths
def test_cka_matches_the_formula(n: int, p: int, q: int) -> None:
    x, y = related(n, p, q, seed=n)
    assert linear_cka(x, y) == pytest.approx(ref_linear_cka(x, y), abs=TOL)
    assert debiased_cka(x, y) == pytest.approx(ref_debiased_cka(x, y), abs=TOL)


def test_blocked_gram_norm_equals_the_full_product() -> None:
    x, _ = related(40, 50, 3, seed=9)
    expected = np.linalg.norm((x - x.mean(0)).T @ (x - x.mean(0))) ** 2
    xc = torch.from_numpy(x - x.mean(0))
    for block in (7, 25, 50, 64):
        assert _gram_fro2(xc, block) == pytest.approx(expected, rel=1e-12)


def test_svcca_and_pwcca_match_the_formula() -> None:
    x, y = related(400, 20, 12, seed=3)
    assert svcca(x, y) == pytest.approx(ref_svcca(x, y), abs=TOL)
    assert svcca(x, y, keep_variance=0.9) == pytest.approx(ref_svcca(x, y, 0.9), abs=TOL)
    assert pwcca(x, y) == pytest.approx(ref_pwcca(x, y), abs=TOL)
    assert pwcca(y, x) == pytest.approx(ref_pwcca(y, x), abs=TOL)
    assert pwcca(x, y) != pytest.approx(pwcca(y, x), abs=1e-3)  # asymmetric, as documented


def test_svcca_keeps_the_directions_explaining_the_variance() -> None:
    rng = np.random.default_rng(2)
    # 3 strong directions (variance 100) + 7 weak (variance 1e-4): 99 % keeps exactly 3
    x = rng.normal(size=(500, 10)) * np.r_[[10.0] * 3, [0.01] * 7]
    y = x[:, :3] @ rng.normal(size=(3, 3))  # the strong subspace only
    assert svcca(x, y) == pytest.approx(1.0, abs=1e-9)
    assert svcca(x, y, keep_variance=1.0) == pytest.approx(3 / 3, abs=1e-9)  # mean over min(10,3)
    assert svcca(x, y, keep_dims=2) < 0.999


def test_minibatch_cka_matches_the_formula() -> None:
    x, y = related(120, 6, 4, seed=5)
    ref = [sum(ref_hsic1(a @ a.T, b @ b.T) for a, b in zip(np.split(u, 4), np.split(v, 4),
                                                          strict=True))
           for u, v in ((x, y), (x, x), (y, y))]
    assert minibatch_cka(x, y, 30) == pytest.approx(ref[0] / math.sqrt(ref[1] * ref[2]), abs=TOL)
    assert minibatch_cka(x, y, 120) == pytest.approx(debiased_cka(x, y), abs=1e-10)


# ----------------------------------------------------------------------------- estimators
def test_debiased_cka_of_independent_data_is_near_zero_when_features_exceed_examples() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 2000)), rng.normal(size=(40, 2000))
    assert linear_cka(x, y) > 0.8  # the biased estimator sees structure that is not there
    assert abs(debiased_cka(x, y)) < 0.05


def test_minibatch_cka_converges_to_full_cka() -> None:
    x, y = related(8192, 8, 6, seed=6)
    full = debiased_cka(x, y)
    assert linear_cka(x, y) == pytest.approx(full, abs=2e-3)  # many examples: bias negligible
    # over many batches: the error shrinks as minibatches of 32 are added (2 -> 256 batches)
    few = abs(minibatch_cka(x[:64], y[:64], 32) - full)
    many = abs(minibatch_cka(x, y, 32) - full)
    assert few > 0.05 and many < 0.005
    # as the batch grows, with the data fixed (256 batches of 32 -> 2 of 4,096)
    large = abs(minibatch_cka(x, y, 4096) - full)
    assert large < many and large < 1e-3


@pytest.mark.parametrize("debiased", [False, True])
def test_streamed_cka_equals_in_memory_cka(debiased: bool) -> None:
    x, y = related(1000, 16, 9, seed=7)
    x = x + 1e3  # large offset: the running sums must not cancel
    acc = StreamingCKA(debiased=debiased)
    for i in range(0, 1000, 64):  # uneven last batch
        acc.update(torch.from_numpy(x[i : i + 64]), torch.from_numpy(y[i : i + 64]))
    full = debiased_cka(x, y) if debiased else linear_cka(x, y)
    assert acc.value() == pytest.approx(full, abs=1e-10)


def test_streaming_minibatch_cka_class_equals_slicing() -> None:
    x, y = related(256, 5, 5, seed=8)
    acc = MinibatchCKA()
    for i in range(0, 256, 64):
        acc.update(x[i : i + 64], y[i : i + 64])
    assert acc.value() == pytest.approx(minibatch_cka(x, y, 64), abs=1e-12)


def test_no_variance_gives_nan() -> None:
    x, _ = related(50, 4, 3)
    dead = np.zeros((50, 3))
    for fn in (linear_cka, debiased_cka, svcca, pwcca):
        assert math.isnan(fn(x, dead))


# ----------------------------------------------------------------------------- conv layouts
def test_conv_pool_and_flatten_layouts() -> None:
    t = torch.randn(3, 4, 5, 6)  # (N, C, H, W)
    pooled = as_examples(t, "pool")
    assert pooled.shape == (3, 4) and pooled.dtype == torch.float64
    assert torch.allclose(pooled, t.double().mean(dim=(2, 3)))
    flat = as_examples(t, "flatten")
    assert flat.shape == (3 * 5 * 6, 4)
    assert torch.equal(flat[1 * 30 + 2 * 6 + 3], t[1, :, 2, 3].double())  # example 1, h=2, w=3
    assert as_examples(torch.randn(3, 4, 7), "flatten").shape == (21, 4)  # (N, C, L)
    with pytest.raises(ConfigError, match="valid: pool, flatten"):
        as_examples(t, "features")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- bad input
def test_svcca_with_fewer_examples_than_features_suggests_cka() -> None:
    x, y = related(30, 50, 10)
    for fn in (svcca, pwcca):
        with pytest.raises(ConfigError, match=r"30 examples for 50 features.*CKA"):
            fn(x, y)


def test_mismatched_example_counts_are_an_error() -> None:
    x, y = related(30, 5, 5)
    for fn in SIMS.values():
        with pytest.raises(ConfigError, match="x has 30 rows, y has 29"):
            fn(x, y[:29])
    with pytest.raises(ConfigError, match="spatial sizes must match"):
        linear_cka(torch.randn(4, 3, 8, 8), torch.randn(4, 3, 4, 4), conv="flatten")


def test_unknown_layers_list_the_valid_ones() -> None:
    model = mlp(0)
    with pytest.raises(ConfigError, match=r"unknown layer\(s\) 'fc9' in Sequential; valid: 0, 1"):
        capture_activations(model, inputs(1, 8, 64), ["0", "fc9"])
    with pytest.raises(ConfigError, match="unknown similarity method 'cca'; valid: cka"):
        compare_models(model, model, inputs(1, 8, 64), method="cca")


def test_a_layer_that_does_not_run_is_named() -> None:
    class Skips(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.unused = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    with pytest.raises(ConfigError, match="'unused' of Skips did not run"):
        capture_activations(Skips(), [torch.randn(8, 4)], ["fc", "unused"])


def test_a_module_run_twice_per_forward_is_refused() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.fc(self.act(x)))

    with pytest.raises(ConfigError, match="'act' ran more than once"):
        capture_activations(Twice(), [torch.randn(8, 4)], ["act"])


# ----------------------------------------------------------------------------- models
def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8)
    )


def inputs(k: int, n: int, d: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g) for _ in range(k)]


@pytest.mark.parametrize("method", ["cka", "svcca"])
def test_independent_untrained_nets_score_low_and_a_perturbed_copy_high(method: str) -> None:
    a, b, batches = mlp(0), mlp(1), inputs(4, 256, 64)
    noisy = copy.deepcopy(a)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    # narrow layers (16 and 8 units fed by 64 inputs): independent random projections differ
    low = compare_models(a, b, batches, method=method, pairs=[("2", "2"), ("4", "4")])
    high = compare_models(a, noisy, batches, method=method)
    assert max(low.values()) < (0.1 if method == "cka" else 0.35)
    assert min(high.values()) > 0.999


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Dropout(0.5),
        nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 10),
    )


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k  # weights, BN running stats and counter
    for g0, g1 in zip(before["grads"], after["grads"], strict=True):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)


def test_capture_leaves_the_model_as_found() -> None:
    model = bn_net()
    model.train()
    model[1].eval()  # a mixed state must come back as it was, module by module
    model[0].weight.requires_grad_(False)
    model[8].weight.grad = torch.ones_like(model[8].weight)
    before = snapshot(model)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 6, 6, generator=g), torch.zeros(8)) for _ in range(3)]
    acts = capture_activations(model, batches, ["0", "4", "8"], max_examples=20)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {
        "0": (20, 6), "4": (20, 8), "8": (20, 10)
    }
    assert_same(before, snapshot(model))
    compare_models(model, bn_net(), batches, method="debiased_cka", conv="flatten")
    assert_same(before, snapshot(model))
    # errors mid-stream: restored at once, even while the traceback (which holds the
    # suspended stream's frame) is still alive
    with pytest.raises(ConfigError) as err:
        capture_activations(model, [batches[0], "not a batch"], ["0"])
    assert_same(before, snapshot(model))
    with pytest.raises(ConfigError, match="rows") as err:  # raised by a tracker
        compare_models(model, model, batches, conv="flatten", pairs=[("0", "8")])
    assert_same(before, snapshot(model))
    del err


def test_capture_is_taken_in_eval_mode() -> None:
    model = bn_net().train()
    x = torch.randn(8, 3, 6, 6)
    acts = capture_activations(model, [x], ["8"])
    model.eval()
    with torch.no_grad():
        expected = model(x).double()
    assert torch.allclose(acts["8"], expected)


def test_capture_stops_after_max_examples() -> None:
    served = []

    def batches():  # a one-shot generator that records how far it was read
        for i, b in enumerate(inputs(10, 4, 64)):
            served.append(i)
            yield b

    acts = capture_activations(mlp(0), batches(), ["0"], max_examples=10)
    assert acts["0"].shape == (10, 16)
    assert served == [0, 1, 2]
    flat = capture_activations(bn_net(), [torch.randn(4, 3, 5, 5)] * 3, ["0"], max_examples=6,
                               conv="flatten")
    assert flat["0"].shape == (6 * 25, 6)


def test_compare_models_streamed_cka_equals_cka_of_captured_activations() -> None:
    a, b, batches = mlp(0), mlp(1), inputs(5, 100, 64)
    acts_a = capture_activations(a, batches, ["0", "2"], max_examples=None)
    acts_b = capture_activations(b, batches, ["2", "4"], max_examples=None)
    pairs = [("0", "4"), ("2", "2")]
    methods = {"cka": linear_cka, "debiased_cka": debiased_cka, "svcca": svcca, "pwcca": pwcca,
               "minibatch_cka": lambda x, y: minibatch_cka(x, y, 100)}  # batches of 100
    assert set(methods) == set(METHODS)
    for method, fn in methods.items():
        res = compare_models(a, b, batches, method=method, pairs=pairs)
        for la, lb in pairs:
            assert res[la, lb] == pytest.approx(fn(acts_a[la], acts_b[lb]), abs=1e-9), method


def test_flatten_pairs_layers_of_one_spatial_size_and_refuses_others() -> None:
    net, batches = bn_net(), [torch.randn(8, 3, 6, 6) for _ in range(2)]
    for method in ("cka", "minibatch_cka", "svcca"):
        res = compare_models(net, bn_net(), batches, method=method, conv="flatten",
                             pairs=[("0", "4"), ("8", "8")])  # 36 rows per input; 1 row
        assert res["0", "4"] < 1.0 and res["8", "8"] == pytest.approx(1.0, abs=1e-9)
        with pytest.raises(ConfigError, match=r"'0' and '8' give \d+ and \d+ rows"):
            compare_models(net, net, batches, method=method, conv="flatten", pairs=[("0", "8")])


def test_bad_pairs_are_an_error() -> None:
    model = mlp(0)
    for bad in (["00"], [("0", "2", "4")], []):
        with pytest.raises(ConfigError, match="pairs"):
            compare_models(model, model, inputs(1, 8, 64), pairs=bad)


def test_default_pairs_across_architectures(caplog: pytest.LogCaptureFixture) -> None:
    a = mlp(0)
    b = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))  # '0' and '2' shared
    with caplog.at_level(logging.INFO, logger="pruning_core.similarity"):
        pairs = default_pairs(a, b)
    assert pairs == [("0", "0"), ("2", "2")]
    assert "comparing 2 layer pairs: 0, 2" in caplog.text
    assert "not compared: 4" in caplog.text
    with pytest.raises(ConfigError, match="share no Conv/Linear layer names"):
        default_pairs(a, nn.Sequential(nn.ReLU(), nn.Sequential(nn.Linear(64, 3))))


def test_similarity_matrix_rows_are_model_a_layers() -> None:
    a, b, batches = mlp(0), mlp(1), inputs(3, 128, 64)
    m = similarity_matrix(a, b, batches, method="cka")
    assert m.shape == (3, 3) and m.dtype == torch.float64
    pairs = compare_models(a, b, batches, pairs=[("0", "2"), ("4", "0")])
    assert m[0, 1].item() == pytest.approx(pairs["0", "2"], abs=1e-12)
    assert m[2, 0].item() == pytest.approx(pairs["4", "0"], abs=1e-12)
    self_m = similarity_matrix(a, a, batches, ["0", "2"], ["0", "2", "4"], method="debiased_cka")
    assert self_m.shape == (2, 3)
    assert torch.allclose(self_m.diagonal(), torch.ones(2, dtype=torch.float64))
