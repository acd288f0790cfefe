"""The fast paths of linear CKA and SVCCA against hand computations from the formulas.

linear CKA (REFERENCE.md): CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) on centred X, Y, equal to
⟨K, L⟩ / (‖K‖_F ‖L‖_F) with K = XXᵀ, L = YYᵀ. Large inputs run the products in float32 (float64
centring and sums); small ones, and ``precision="float64"``, stay float64. SVCCA's basis comes
from the eigendecomposition of XᵀX when the kept directions are well conditioned, from the SVD
of X otherwise; both must give the numpy SVD formula's value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pruning_core.similarity._inputs as inputs
import pruning_core.similarity.cca as cca
from pruning_core.base.errors import ConfigError
from pruning_core.similarity import linear_cka, pwcca, svcca
from pruning_core.similarity.cka import FLOAT32_FROM_MACS, _gram_side, _product_dtype
from tests.pruning_core.test_similarity import ref_pwcca, ref_svcca


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def hand_cka(x: np.ndarray, y: np.ndarray) -> float:
    """‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) after centring, numpy float64 (Kornblith et al. 2019)."""
    x, y = x - x.mean(0), y - y.mean(0)
    num = np.sum((y.T @ x) ** 2)
    return float(num / (np.sqrt(np.sum((x.T @ x) ** 2)) * np.sqrt(np.sum((y.T @ y) ** 2))))


def offset_relu_pair(n: int, p: int, q: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Activations as networks make them: large means, ReLU sparsity, unequal scales."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * np.exp(rng.normal(size=p)) + 300.0
    y = np.maximum(x @ rng.normal(size=(p, q)) / math.sqrt(p) - 200.0, 0.0)
    return x, y + 0.05 * rng.normal(size=(n, q))


def test_large_inputs_run_float32_products_and_stay_within_1e_7_of_the_formula() -> None:
    n, p, q = 3000, 200, 160  # n > p + q: feature side; n (p+q)²/2 ≈ 1.9e8 >= 1e8 MACs
    assert n * (p + q) ** 2 / 2 >= FLOAT32_FROM_MACS
    x, y = offset_relu_pair(n, p, q, seed=0)
    want = hand_cka(x, y)
    assert 0.05 < want < 0.95
    fast, exact = linear_cka(x, y), linear_cka(x, y, precision="float64")
    assert fast != exact  # the float32 route ran (its rounding differs)...
    assert fast == pytest.approx(want, abs=1e-7)  # ...and costs less than 1e-7
    assert exact == pytest.approx(want, abs=1e-12)
    # float32 activations (what a network gives) go in without a float64 copy
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    want32 = hand_cka(x32.astype(np.float64), y32.astype(np.float64))
    assert linear_cka(torch.from_numpy(x32), torch.from_numpy(y32)) == pytest.approx(
        want32, abs=1e-7)


def test_small_inputs_stay_float64() -> None:
    x, y = offset_relu_pair(200, 12, 9, seed=1)
    assert linear_cka(x, y) == pytest.approx(hand_cka(x, y), abs=1e-12)


@pytest.mark.parametrize(("n", "p", "q"), [(150, 100, 80), (100, 120, 30)])  # n < p + q: Grams
def test_gram_side_equals_the_gram_formula(n: int, p: int, q: int) -> None:
    x, y = offset_relu_pair(n, p, q, seed=n)
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l_ = xc @ xc.T, yc @ yc.T
    kl, kk, ll = np.sum(k * l_), np.sum(k * k), np.sum(l_ * l_)
    for block in (7, 64, n, 4 * n):  # uneven last block, one block, a block past the end
        got = _gram_side(torch.from_numpy(xc), torch.from_numpy(yc), block)
        assert got == pytest.approx((kl, kk, ll), rel=1e-12)
    want = kl / math.sqrt(kk * ll)
    assert want == pytest.approx(hand_cka(x, y), abs=1e-12)  # the two forms agree
    assert linear_cka(x, y, precision="float64") == pytest.approx(want, abs=1e-12)
    assert linear_cka(x, y, precision="float32") == pytest.approx(want, abs=1e-6)


def test_precision_choice() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert _product_dtype(cpu, "auto", FLOAT32_FROM_MACS - 1) == torch.float64
    assert _product_dtype(cpu, "auto", FLOAT32_FROM_MACS) == torch.float32
    assert _product_dtype(cpu, "float64", 1e15) == torch.float64
    assert _product_dtype(cpu, "float32", 1.0) == torch.float32
    before = torch.get_float32_matmul_precision()
    try:  # TF32 matmuls (10 mantissa bits) are never chosen by "auto"
        torch.set_float32_matmul_precision("high")
        assert _product_dtype(cuda, "auto", 1e15) == torch.float64
        torch.set_float32_matmul_precision("highest")
        assert _product_dtype(cuda, "auto", 1e15) == torch.float32
    finally:
        torch.set_float32_matmul_precision(before)
    with pytest.raises(ConfigError, match="precision: 'half' is not one of auto, float32"):
        linear_cka(np.ones((5, 2)), np.ones((5, 2)), precision="half")  # type: ignore[arg-type]


def test_centred_rounds_once_after_float64_centring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "_CHUNK_ELEMENTS", 40)  # rows of 10 features: 4 per chunk
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(23, 10)) + 1e6).astype(np.float32)  # mean 1e6, spread 1
    want = x.astype(np.float64) - x.astype(np.float64).mean(0)
    got = inputs.centred(torch.from_numpy(x), torch.float32)
    assert got.dtype == torch.float32
    # each entry is the float64 difference rounded once to float32 (<= 1 ulp at |v| < 4)...
    np.testing.assert_allclose(got.numpy(), want.astype(np.float32), rtol=0, atol=5e-7)
    # ...where centring in float32 itself is off by ~1e6 * 6e-8
    naive = torch.from_numpy(x) - torch.from_numpy(x).mean(0)
    assert np.abs(naive.numpy() - want).max() > 1e-3
    got64 = inputs.centred(torch.from_numpy(x.astype(np.float64)), torch.float64)
    np.testing.assert_allclose(got64.numpy(), want, rtol=0, atol=1e-9)


def well_conditioned(n: int, p: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, p)) * np.linspace(1.0, 3.0, p) + 5.0


def test_svcca_gram_route_matches_the_svd_formula(monkeypatch: pytest.MonkeyPatch) -> None:
    x = well_conditioned(600, 40, seed=4)
    y = np.tanh(x @ np.random.default_rng(5).normal(size=(40, 30)) / 20.0)
    want = ref_svcca(x, y), ref_svcca(x, y, 0.9), ref_pwcca(x, y)

    def no_svd(*args: object, **kwargs: object) -> None:
        raise AssertionError("the SVD route was taken")

    monkeypatch.setattr(torch.linalg, "svd", no_svd, raising=True)
    assert svcca(x, y) == pytest.approx(want[0], abs=1e-9)
    assert svcca(x, y, keep_variance=0.9) == pytest.approx(want[1], abs=1e-9)
    # PWCCA's own CCA step is one SVD of a small matrix: allow that one, on k x k inputs only
    monkeypatch.undo()
    real_svd = torch.linalg.svd

    def small_svd(a: torch.Tensor, *args: object, **kwargs: object) -> object:
        assert a.shape[0] <= 40, "the SVD route was taken for the data"
        return real_svd(a, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "svd", small_svd, raising=True)
    assert pwcca(x, y) == pytest.approx(want[2], abs=1e-9)


def test_svcca_falls_back_to_the_svd_for_ill_conditioned_kept_directions() -> None:
    rng = np.random.default_rng(6)
    # singular values over 6 decades: keep_variance=1.0 keeps directions with λ/λmax ~ 1e-12
    x = rng.normal(size=(500, 12)) * np.logspace(0, -6, 12)
    y = x @ rng.normal(size=(12, 12)) + 1e-7 * rng.normal(size=(500, 12))
    calls: list[tuple[int, ...]] = []
    real_svd = torch.linalg.svd

    def spy(a: torch.Tensor, *args: object, **kwargs: object) -> object:
        calls.append(tuple(a.shape))
        return real_svd(a, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.linalg, "svd", spy)
        got = svcca(x, y, keep_variance=1.0)
    assert (500, 12) in calls  # the data's own SVD
    assert got == pytest.approx(ref_svcca(x, y, 1.0), abs=1e-6)


def test_svcca_gram_route_keeps_the_subspace_basis_orthonormal() -> None:
    x = torch.from_numpy(well_conditioned(800, 30, seed=7))
    xc = x - x.mean(0)
    basis = cca.subspace(xc, keep_variance=0.99)
    assert 0 < basis.shape[1] <= 30
    eye = torch.eye(basis.shape[1], dtype=torch.float64)
    assert torch.allclose(basis.T @ basis, eye, atol=1e-10)
    # it spans the top right-singular directions of x: projecting them loses nothing
    _, _, vh = np.linalg.svd(xc.numpy(), full_matrices=False)
    top = xc.numpy() @ vh[: basis.shape[1]].T
    resid = top - basis.numpy() @ (basis.numpy().T @ top)
    assert np.linalg.norm(resid) <= 1e-8 * np.linalg.norm(top)
