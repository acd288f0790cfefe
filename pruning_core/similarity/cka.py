"""Linear CKA (Kornblith et al. 2019), debiased CKA and minibatch CKA (Nguyen et al. 2021).

For centred X (n x p) and Y (n x q), K = X Xᵀ, L = Y Yᵀ:

    CKA(X, Y) = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F) = ⟨K, L⟩ / (‖K‖_F ‖L‖_F)

Both sides are computed from whichever is cheaper: p x q feature-space products when the data has
more examples than features, n x n Grams otherwise. Debiased CKA replaces ⟨K, L⟩ with the
unbiased HSIC estimator (Song et al. 2012), with K̃ = K with its diagonal set to 0:

    HSIC₁(K, L) = [tr(K̃L̃) + 1ᵀK̃1 · 1ᵀL̃1 / ((n-1)(n-2)) - 2/(n-2) · 1ᵀK̃L̃1] / (n(n-3))

and in feature space, for centred data with row norms aᵢ = ‖xᵢ‖², bᵢ = ‖yᵢ‖² (Kornblith's
notebook): n(n-3) HSIC₁ = ‖YᵀX‖²_F - n/(n-2) Σ aᵢbᵢ + Σa Σb / ((n-1)(n-2)).
Minibatch CKA averages HSIC₁ over minibatches, then normalises: memory stays one batch.

Precision. Centring and every reduction are float64. Linear CKA's large products (XᵀX, YᵀX
or the n x n Grams) run in float32 when the work is large (``precision="auto"``: at least
``FLOAT32_FROM_MACS`` multiply-adds) and float64 otherwise, or as asked (``precision=``).
Its three terms are sums of squares of those products, with no cancellation, so float32
products cost ~1e-8 in the CKA value (measured: 4e-9 at worst over dense, independent,
offset-ReLU, badly scaled and low-rank 10,000 x 1,024 data) while running twice as fast. The
debiased estimators subtract nearly equal terms, so they stay float64 throughout, as do SVCCA
and the streaming moments. A side with no variance (a dead or fully pruned layer) has no
defined similarity: the functions return ``nan``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ..base.errors import ConfigError
from ._inputs import ArrayLike, Conv, as_examples, centre, centred, paired

Precision = Literal["auto", "float32", "float64"]
PRECISIONS: tuple[str, ...] = ("auto", "float32", "float64")
#: ``precision="auto"`` runs linear CKA's products in float32 from this many multiply-adds
#: (≈ 2 ms of float64 work on one core): below it float64 costs nothing worth saving
FLOAT32_FROM_MACS = 1e8


def _need_rows(n: int, least: int, what: str) -> None:
    if n < least:
        raise ConfigError(f"{what} needs at least {least} examples; got {n}")


def _ratio(num: float, den_sq: float) -> float:
    """num / sqrt(den_sq); nan where the denominator is 0 or negative (undefined)."""
    if not den_sq > 0.0 or not math.isfinite(den_sq):
        return math.nan
    return num / math.sqrt(den_sq)


def _gram_is_cheaper(n: int, p: int, q: int) -> bool:
    """Two n x n Grams cost n²(p+q); the three feature products cost n(p² + q² + pq)."""
    return n * (p + q) < p * p + q * q + p * q


def _fro2(m: torch.Tensor) -> float:
    """‖m‖²_F accumulated in float64 whatever m's dtype (a float32 sum of 10⁷ squares drifts
    by ~1e-3)."""
    return float(torch.linalg.vector_norm(m, dtype=torch.float64)) ** 2


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """⟨a, b⟩ = Σ aᵢⱼ bᵢⱼ accumulated in float64."""
    return float((a * b).sum(dtype=torch.float64))


def _gram_fro2(x: torch.Tensor, block: int = 512) -> float:
    """‖XᵀX‖²_F from the upper-triangular column blocks of XᵀX only: XᵀX is symmetric, so
    off-diagonal blocks count twice. About half the work of one full matrix product when
    p >> block (BLAS's symmetric rank-k update, which torch does not expose, saves the same)."""
    p = x.shape[1]
    total = 0.0
    for start in range(0, p, block):
        a = x[:, start : start + block]
        total += _fro2(a.T @ a)
        if start + block < p:
            total += 2.0 * _fro2(a.T @ x[:, start + block :])
    return total


def unbiased_hsic(kx: torch.Tensor, ky: torch.Tensor) -> float:
    """HSIC₁ of two n x n Gram matrices (Song et al. 2012, the unbiased estimator); needs n >= 4."""
    n = kx.shape[0]
    kt = kx - torch.diag(torch.diagonal(kx))
    lt = ky - torch.diag(torch.diagonal(ky))
    trace = (kt * lt).sum()
    sums = kt.sum() * lt.sum() / ((n - 1) * (n - 2))
    cross = 2.0 / (n - 2) * (kt.sum(dim=0) @ lt.sum(dim=1))
    return float((trace + sums - cross) / (n * (n - 3)))


def _debiased_dot(xty2: float, a: torch.Tensor, b: torch.Tensor, n: int) -> float:
    """n(n-3) HSIC₁ from ‖YᵀX‖²_F and the row norms of *centred* data (feature space)."""
    return xty2 - n / (n - 2) * float(a @ b) + float(a.sum() * b.sum()) / ((n - 1) * (n - 2))


def _hsic1(x: torch.Tensor, y: torch.Tensor) -> float:
    """n(n-3) HSIC₁ (the scale cancels in CKA) of centred data, by the cheaper formula."""
    n = x.shape[0]
    if _gram_is_cheaper(n, x.shape[1], y.shape[1]):
        return unbiased_hsic(x @ x.T, y @ y.T) * n * (n - 3)
    a, b = (x * x).sum(dim=1), (y * y).sum(dim=1)
    return _debiased_dot(_gram_fro2(x) if x is y else _fro2(y.T @ x), a, b, n)


def batch_hsic(x: torch.Tensor, y: torch.Tensor) -> float:
    """HSIC₁ of one minibatch of *centred* data (n >= 4 rows), by the cheaper formula."""
    n = x.shape[0]
    return _hsic1(x, y) / (n * (n - 3))


def _product_dtype(device: torch.device, precision: str, macs: float) -> torch.dtype:
    """float32 or float64 for linear CKA's products (see the module's note on precision)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "float64" or (precision == "auto" and macs < FLOAT32_FROM_MACS):
        return torch.float64
    # "auto" never runs float32 products as TF32 (10 mantissa bits): CUDA with TF32 enabled
    # (torch.set_float32_matmul_precision("high"/"medium")) keeps float64
    if (precision == "auto" and device.type == "cuda"
            and torch.get_float32_matmul_precision() != "highest"):
        return torch.float64
    return torch.float32


def _gram_side(x: torch.Tensor, y: torch.Tensor, block: int = 1024) -> tuple[float, float, float]:
    """(⟨K, L⟩, ‖K‖²_F, ‖L‖²_F) for K = XXᵀ, L = YYᵀ from the upper-triangular row blocks of
    the Grams only (both symmetric: off-diagonal blocks count twice). Memory: block x n."""
    n = x.shape[0]
    kl = kk = ll = 0.0
    for start in range(0, n, block):
        end = min(start + block, n)
        k = x[start:end] @ x[start:].T  # rows start:end, columns start: of K
        l_ = y[start:end] @ y[start:].T
        d = end - start  # the first d columns are the diagonal block
        kl += _dot(k[:, :d], l_[:, :d]) + 2.0 * _dot(k[:, d:], l_[:, d:])
        kk += _fro2(k[:, :d]) + 2.0 * _fro2(k[:, d:])
        ll += _fro2(l_[:, :d]) + 2.0 * _fro2(l_[:, d:])
    return kl, kk, ll


def linear_cka(
    x: ArrayLike, y: ArrayLike, *, conv: Conv = "pool", precision: Precision = "auto"
) -> float:
    """Linear CKA of two activation matrices with the same examples (rows) in the same order.

    1.0 for identical representations; invariant to orthogonal maps and isotropic scaling of
    either side, not to arbitrary invertible maps. Biased upwards when features >> examples
    (two independent random matrices score > 0): use :func:`debiased_cka` there.

    Cost: with n examples and p, q features, the feature-space side ‖YᵀX‖²_F, ‖XᵀX‖_F, ‖YᵀY‖_F
    takes n(p+q)²/2 multiply-adds (symmetric blocks), the Gram side ⟨K, L⟩, ‖K‖_F, ‖L‖_F
    n²(p+q)/2: the Grams are used when n < p + q. ``precision``: ``"auto"`` (float32 products
    for large inputs, float64 centring and sums), ``"float64"`` or ``"float32"``.
    """
    a, b = paired(x, y, conv, dtype=None)  # no float64 copy of float32 activations
    n, p, q = a.shape[0], a.shape[1], b.shape[1]
    _need_rows(n, 2, "linear CKA")
    gram = n < p + q
    macs = n * (p + q) * (n if gram else p + q) / 2
    dtype = _product_dtype(a.device, precision, macs)
    a, b = centred(a, dtype), centred(b, dtype)
    if gram:
        kl, kk, ll = _gram_side(a, b)
        return _ratio(kl, kk * ll)
    return _ratio(_fro2(b.T @ a), _gram_fro2(a) * _gram_fro2(b))


def debiased_cka(x: ArrayLike, y: ArrayLike, *, conv: Conv = "pool") -> float:
    """CKA with the unbiased HSIC estimator: ≈ 0 for independent data even when features >>
    examples. Needs >= 4 examples; ``nan`` when an unbiased self-HSIC comes out <= 0 (tiny n)."""
    a, b = paired(x, y, conv)
    _need_rows(a.shape[0], 4, "debiased CKA")
    a, b = centre(a), centre(b)
    return _ratio(_hsic1(a, b), _hsic1(a, a) * _hsic1(b, b))


class MinibatchCKA:
    """Minibatch CKA (Nguyen et al. 2021): HSIC₁ summed over minibatches, normalised at the end.

    ``update(x_batch, y_batch)`` per minibatch (>= 4 rows each), ``value()`` at any time.
    Memory is one minibatch. The estimate converges to population CKA as batches are added;
    with one batch holding all the data it equals :func:`debiased_cka`.
    """

    def __init__(self, conv: Conv = "pool") -> None:
        self.conv = conv
        self.xy = self.xx = self.yy = 0.0
        self.batches = 0

    def update(self, x: ArrayLike, y: ArrayLike) -> None:
        a, b = paired(x, y, self.conv)
        _need_rows(a.shape[0], 4, "minibatch CKA (each minibatch)")
        a, b = centre(a), centre(b)  # HSIC₁ is translation invariant; centring helps precision
        self.xy += batch_hsic(a, b)
        self.xx += batch_hsic(a, a)
        self.yy += batch_hsic(b, b)
        self.batches += 1

    def value(self) -> float:
        if self.batches == 0:
            raise ConfigError("minibatch CKA: no batches were given")
        return _ratio(self.xy, self.xx * self.yy)


def minibatch_cka(
    x: ArrayLike, y: ArrayLike, batch_size: int, *, conv: Conv = "pool"
) -> float:
    """:class:`MinibatchCKA` over consecutive slices of ``batch_size`` rows of in-memory data
    (a last slice of fewer than 4 rows is dropped)."""
    a, b = as_examples(x, conv), as_examples(y, conv)
    if a.shape[0] != b.shape[0]:
        paired(a, b)  # raises the standard message
    acc = MinibatchCKA()
    for xa, yb in zip(a.split(batch_size), b.split(batch_size), strict=True):
        if xa.shape[0] >= 4:
            acc.update(xa, yb)
    return acc.value()


class Moments:
    """Running sums over examples of a pair (x, y) that give exact CKA without the data.

    Holds Σx, Σy, Σxyᵀ (p x q), Σ‖x‖², Σ‖y‖², Σ‖x‖²‖y‖², Σ‖y‖²x and Σ‖x‖²y: memory
    O(p·q), flat in the number of examples. Rows are shifted by the first batch's mean before
    summing (CKA is translation invariant) so the float64 sums do not cancel.
    ``Moments`` of (x, x) are the self-moments a CKA normaliser needs.
    """

    def __init__(self) -> None:
        self.n = 0

    def update(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch: float64 (b, p) and (b, q) with the same examples in the same order."""
        if self.n == 0:
            self.shift_x, self.shift_y = x.mean(dim=0), y.mean(dim=0)
            p, q = x.shape[1], y.shape[1]
            z = dict(dtype=x.dtype, device=x.device)
            self.sx, self.sy = torch.zeros(p, **z), torch.zeros(q, **z)
            self.cxy = torch.zeros(p, q, **z)
            self.ux, self.uy = torch.zeros(p, **z), torch.zeros(q, **z)
            self.rx = self.ry = self.rxry = 0.0
        x, y = x - self.shift_x, y - self.shift_y
        rx, ry = (x * x).sum(dim=1), (y * y).sum(dim=1)
        self.n += x.shape[0]
        self.sx += x.sum(dim=0)
        self.sy += y.sum(dim=0)
        self.cxy += x.T @ y
        self.rx += float(rx.sum())
        self.ry += float(ry.sum())
        self.rxry += float(rx @ ry)
        self.ux += ry @ x  # Σ ‖yᵢ‖² xᵢ
        self.uy += rx @ y  # Σ ‖xᵢ‖² yᵢ

    def hsic(self, debiased: bool) -> float:
        """‖X̄ᵀȲ‖²_F of the centred data (biased), or n(n-3) HSIC₁ (debiased)."""
        n = self.n
        mx, my = self.sx / n, self.sy / n
        cross = self.cxy - n * torch.outer(mx, my)  # X̄ᵀȲ
        dot2 = _fro2(cross)
        if not debiased:
            return dot2
        mxx, myy = float(mx @ mx), float(my @ my)
        sum_a, sum_b = self.rx - n * mxx, self.ry - n * myy  # Σ‖x̄ᵢ‖², Σ‖ȳᵢ‖²
        # Σ ‖x̄ᵢ‖² ‖ȳᵢ‖², expanded with x̄ᵢ = xᵢ - mx, ȳᵢ = yᵢ - my (Σxᵢ = n mx):
        sum_ab = (
            self.rxry - 2 * float(my @ self.uy) - 2 * float(mx @ self.ux)
            + myy * self.rx + mxx * self.ry + 4 * float(mx @ self.cxy @ my) - 3 * n * mxx * myy
        )
        return dot2 - n / (n - 2) * sum_ab + sum_a * sum_b / ((n - 1) * (n - 2))


def cka_from_moments(xy: Moments, xx: Moments, yy: Moments, debiased: bool = False) -> float:
    """CKA (or debiased CKA) from the moments of (x, y), (x, x) and (y, y)."""
    _need_rows(xy.n, 4 if debiased else 2, "CKA")
    return _ratio(xy.hsic(debiased), xx.hsic(debiased) * yy.hsic(debiased))


class StreamingCKA:
    """Exact linear CKA (or debiased CKA) over data fed in batches; memory O((p + q)²).

    ``update(x_batch, y_batch)`` then ``value()``: equals :func:`linear_cka` /
    :func:`debiased_cka` on all the rows at once, to float64 rounding.
    """

    def __init__(self, debiased: bool = False, conv: Conv = "pool") -> None:
        self.debiased, self.conv = debiased, conv
        self.xy, self.xx, self.yy = Moments(), Moments(), Moments()

    def update(self, x: ArrayLike, y: ArrayLike) -> None:
        a, b = paired(x, y, self.conv)
        self.xy.update(a, b)
        self.xx.update(a, a)
        self.yy.update(b, b)

    def value(self) -> float:
        return cka_from_moments(self.xy, self.xx, self.yy, self.debiased)
