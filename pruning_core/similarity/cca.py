"""SVCCA (Raghu et al. 2017) and PWCCA (Morcos et al. 2018).

CCA through orthonormal bases: for centred X (n x p) and Y (n x q) with orthonormal bases
Q_x, Q_y of their column spaces (n x k), the canonical correlations are the singular values of
Q_xᵀ Q_y, and the canonical variates of X are Q_x U (U: left singular vectors).

SVCCA first keeps, on each side, the top singular directions explaining ``keep_variance`` of the
variance (or a fixed ``keep_dims``); the kept left singular vectors U_k *are* an orthonormal
basis of the reduced data U_k S_k, so the CCA step is one small SVD. The score is the mean of the
min(k_x, k_y) canonical correlations.

Invariance: CCA (``keep_variance=1.0``) is invariant to any invertible linear map of either side.
The SVD truncation is only invariant to orthogonal maps and isotropic scaling: an arbitrary
invertible map changes which directions hold 99 % of the variance.

PWCCA weights each canonical correlation ρᵢ by αᵢ ∝ Σⱼ |⟨hᵢ, xⱼ⟩| (hᵢ: i-th canonical variate
of X, xⱼ: the j-th neuron of centred X over the examples), Σα = 1. It is asymmetric: the
weights come from the first argument. Morcos et al. use no SVD step, hence
``keep_variance=1.0`` by default.

CCA needs more examples than features (else any two layers correlate perfectly): fewer raise
:class:`ConfigError`.
"""

from __future__ import annotations

import math

import torch

from ..base.errors import ConfigError
from ._inputs import ArrayLike, Conv, centre, paired


def _check_examples(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    n, p = x.shape[0], max(x.shape[1], y.shape[1])
    if n < p:
        raise ConfigError(
            f"{what} needs at least as many examples as features: got {n} examples for {p} "
            f"features (CCA of so few examples correlates anything). Use CKA (linear_cka / "
            f"debiased_cka), or more examples (for conv layers conv='flatten' counts every "
            f"position as an example)."
        )


def _keep_count(s: torch.Tensor, rank: int, keep_variance: float, keep_dims: int | None) -> int:
    """How many leading singular directions to keep (never past the numerical rank)."""
    if rank == 0:
        return 0
    if keep_dims is not None:
        return min(keep_dims, rank)
    var = s[:rank] ** 2
    explained = torch.cumsum(var, 0) / var.sum()
    # smallest k whose leading directions explain keep_variance (the 1e-12 absorbs rounding)
    return min(int((explained < keep_variance - 1e-12).sum()) + 1, rank)


#: the Gram route of :func:`subspace` is taken when the smallest kept eigenvalue of XᵀX is at
#: least this share of the largest: the basis X V S⁻¹ is then orthonormal to ~eps / this ≈ 1e-10
GRAM_MIN_RATIO = 1e-6


def subspace(
    x: torch.Tensor, keep_variance: float = 0.99, keep_dims: int | None = None
) -> torch.Tensor:
    """Orthonormal basis (n x k) of the top singular directions of *centred* x (n x p).

    Fast route (n >= p): the eigendecomposition of the p x p Gram XᵀX = V S² Vᵀ gives the
    directions; the basis is U_k = X V_k S_k⁻¹ (three level-3 products and one p x p ``eigh``
    instead of an SVD of the n x p data). Squaring the data squares its condition number, so the
    route is only taken when the kept directions are well conditioned (smallest kept eigenvalue
    >= ``GRAM_MIN_RATIO`` x largest); otherwise (near-rank-deficient data, ``keep_variance=1.0``
    on ill-conditioned data) the thin SVD of x is used, as for n < p.
    """
    if not 0.0 < keep_variance <= 1.0:
        raise ConfigError(f"keep_variance must be in (0, 1]; got {keep_variance}")
    if keep_dims is not None and keep_dims < 1:
        raise ConfigError(f"keep_dims must be >= 1; got {keep_dims}")
    n, p = x.shape
    if n >= p and p > 0:
        lam, v = torch.linalg.eigh(x.T @ x)  # ascending
        lam, v = lam.flip(0).clamp(min=0.0), v.flip(1)
        if float(lam[0]) == 0.0:
            return x.new_zeros(n, 0)
        # eigenvalues below the Gram's own rounding (~p eps λ_max) are not resolved: not counted
        tol = float(lam[0]) * p * torch.finfo(lam.dtype).eps * 10.0
        rank = int((lam > tol).sum())
        k = _keep_count(lam.sqrt(), rank, keep_variance, keep_dims)
        if k and float(lam[k - 1]) >= GRAM_MIN_RATIO * float(lam[0]):
            return x @ (v[:, :k] / lam[:k].sqrt())
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    # numerical rank as numpy.linalg.matrix_rank: s > s_max * max(n, p) * eps
    tol = float(s.max()) * max(x.shape) * torch.finfo(s.dtype).eps if s.numel() else 0.0
    rank = int((s > tol).sum())
    return u[:, : _keep_count(s, rank, keep_variance, keep_dims)]


def canonical_correlations(
    x: ArrayLike,
    y: ArrayLike,
    keep_variance: float = 1.0,
    keep_dims: int | None = None,
    *,
    conv: Conv = "pool",
) -> torch.Tensor:
    """Canonical correlations (descending, float64) between the kept subspaces of x and y."""
    a, b = paired(x, y, conv)
    _check_examples(a, b, "CCA")
    qa = subspace(centre(a), keep_variance, keep_dims)
    qb = subspace(centre(b), keep_variance, keep_dims)
    return torch.linalg.svdvals(qa.T @ qb).clamp(0.0, 1.0)


def svcca(
    x: ArrayLike,
    y: ArrayLike,
    keep_variance: float = 0.99,
    keep_dims: int | None = None,
    *,
    conv: Conv = "pool",
) -> float:
    """SVCCA: mean canonical correlation after keeping the directions that explain
    ``keep_variance`` of each side's variance (or ``keep_dims`` of them). ``nan`` if a side has
    no variance."""
    rho = canonical_correlations(x, y, keep_variance, keep_dims, conv=conv)
    return float(rho.mean()) if rho.numel() else math.nan


def pwcca(
    x: ArrayLike,
    y: ArrayLike,
    keep_variance: float = 1.0,
    keep_dims: int | None = None,
    *,
    conv: Conv = "pool",
) -> float:
    """PWCCA: canonical correlations weighted by how much of x each canonical variate accounts
    for (weights from x: ``pwcca(x, y) != pwcca(y, x)`` in general). ``nan`` if a side has no
    variance."""
    a, b = paired(x, y, conv)
    _check_examples(a, b, "PWCCA")
    a, b = centre(a), centre(b)
    qa, qb = subspace(a, keep_variance, keep_dims), subspace(b, keep_variance, keep_dims)
    if qa.shape[1] == 0 or qb.shape[1] == 0:
        return math.nan
    u, rho, _ = torch.linalg.svd(qa.T @ qb, full_matrices=False)
    variates = qa @ u  # (n, m): canonical variates of x, unit norm
    alpha = (variates.T @ a).abs().sum(dim=1)  # (m,): Σⱼ |⟨hᵢ, xⱼ⟩|
    return float((alpha / alpha.sum()) @ rho.clamp(0.0, 1.0))
