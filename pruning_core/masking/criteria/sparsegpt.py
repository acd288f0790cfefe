"""SparseGPT (Frantar & Alistarh 2023): layer-wise OBS pruning with weight reconstruction.

Based on IST-DASLab/sparsegpt ``sparsegpt.py`` (``SparseGPT.add_batch``, ``fasterprune``) with
its defaults ``blocksize: 128`` and ``percdamp: 0.01``:

- H = 2 X Xᵀ / n from the layer's calibration inputs (n examples; Conv inputs unfolded);
  inputs that are never active (H_jj = 0) get H_jj = 1 and their weights set to 0;
  H += percdamp · mean(diag H) · I; U = chol(H⁻¹) (upper);
- columns are processed in blocks of ``blocksize``: at a block's start the pruned set is the
  lowest w² / U_jj² of the block (unstructured), or, with N:M, at every M-th column the M − N
  lowest of each row's next M weights; then column by column each removed weight's error
  e = (w − q) / U_ii is pushed onto the block's later columns (W₁[:, i:] −= e U_{i, i:}) and
  the block's error onto all later columns (W[:, i₂:] −= E U_{i₁:i₂, i₂:}): the OBS update of
  the weights that stay, not only a mask;
- layers are pruned one after another, each on inputs that ran through the already pruned and
  updated earlier layers (module order). The authors' pass is sequential over decoder blocks
  (the layers of one block share the block's dense inputs, the next block sees the pruned
  one: locuslab/wanda ``lib/prune.py`` ``prune_sparsegpt`` reproduces it); here every layer is
  its own step, which needs no notion of a block;
- N:M: the authors' ``prunen`` counts weights removed per ``prunem``; ``pattern.n`` counts
  those kept (2:4 is the same). Conv inputs are unfolded as in GPTQ (``calibration.py``);
  SparseGPT's own ``add_batch`` has no conv branch.

One deliberate difference: the authors threshold each block at ``sort(...)[int(numel · s)]``
with ``<=`` (one weight more than s when there are no ties); here the layer's prune count from
the allocation is split over blocks in proportion to their columns (cumulative rounding) and
each block prunes exactly its share, so the layer reaches its keep count exactly.

SparseGPT changes weights, which the criterion contract forbids to plain criteria: it does so
only through the ``rewrite`` hook (``criteria/base.py``) that the engine calls after the
allocation. Its score function (what a ``global`` allocation ranks) is the OBS saliency
w² / U_jj² on the dense network and changes nothing. The authors prune every layer to the same
sparsity: use ``allocation: uniform`` to match them.
"""

from __future__ import annotations

import itertools
import math

import torch
from pydantic import BaseModel, ConfigDict, Field

from ...base.errors import ConfigError
from ..select import top_mask
from .base import ScoreContext, criterion
from .calibration import Gram, layer_grams, sequential


class SparseGPTOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    blocksize: int = Field(128, ge=1)
    percdamp: float = Field(0.01, ge=0)


def hessian(gram: Gram) -> torch.Tensor:
    """H = 2 Σ xxᵀ / n (the authors' running ``H`` after all batches)."""
    assert gram.sum is not None
    return 2.0 * gram.sum / max(gram.examples, 1)


def inverse_factor(h: torch.Tensor, percdamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(U = upper Cholesky factor of (H + damp I)⁻¹, dead input columns)."""
    h = h.clone()
    dead = h.diagonal() == 0
    h.diagonal()[dead] = 1.0
    h.diagonal().add_(percdamp * h.diagonal().mean())
    try:
        hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
        return torch.linalg.cholesky(hinv, upper=True), dead
    except torch.linalg.LinAlgError:
        raise ConfigError(
            "prune.criterion_options.percdamp: the calibration Hessian is not positive definite; "
            "raise percdamp (default 0.01) or prune.score_batches"
        ) from None


def _block_counts(total: int, cols: int, blocksize: int) -> list[int]:
    """``total`` pruned weights split over column blocks in proportion to their width."""
    edges = [*range(0, cols, blocksize), cols]
    cum = [math.floor(total * e / cols + 0.5) for e in edges]
    return [b - a for a, b in itertools.pairwise(cum)]


@torch.no_grad()
def obs_prune(w: torch.Tensor, h: torch.Tensor, prune: int, pruned: torch.Tensor | None = None,
              blocksize: int = 128, percdamp: float = 0.01,
              pattern: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``fasterprune`` on a (rows, cols) weight: (updated weight, keep mask).

    ``prune``: weights to remove (unstructured; ignored with ``pattern`` = (n kept, m));
    ``pruned``: weights already removed (they stay removed and are chosen first)."""
    dtype = torch.float64 if w.dtype == torch.float64 else torch.float32
    W = w.detach().to(dtype).clone()
    cols = W.shape[1]
    U, dead = inverse_factor(h.to(dtype), percdamp)
    W[:, dead] = 0
    gone = torch.zeros_like(W, dtype=torch.bool) if pruned is None else pruned.clone()
    counts = _block_counts(prune, cols, blocksize)
    for b, i1 in enumerate(range(0, cols, blocksize)):
        i2 = min(i1 + blocksize, cols)
        W1, U1, old = W[:, i1:i2].clone(), U[i1:i2, i1:i2], gone[:, i1:i2]
        Q1, E1 = torch.zeros_like(W1), torch.zeros_like(W1)
        d2 = U1.diagonal() ** 2
        if pattern is None:
            sal = (W1 ** 2 / d2).masked_fill(old, float("-inf"))
            k = max(counts[b], int(old.sum()))
            mask1 = top_mask(-sal.flatten(), k).view_as(W1)  # the k lowest, ties to lower
        else:
            mask1 = old.clone()
        for i in range(i2 - i1):
            if pattern is not None and i % pattern[1] == 0:
                n, m = pattern
                sal = (W1[:, i:i + m] ** 2 / d2[i:i + m]).masked_fill(old[:, i:i + m],
                                                                      float("-inf"))
                order = torch.sort(sal, dim=1, stable=True).indices[:, : m - n]
                mask1[:, i:i + m].scatter_(1, order, True)
            q = W1[:, i].masked_fill(mask1[:, i], 0.0)
            Q1[:, i] = q
            err = (W1[:, i] - q) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            E1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
        gone[:, i1:i2] = mask1
    return W.to(w.dtype), ~gone


def _rewrite(ctx: ScoreContext, keep: dict[str, int], select, pattern) -> dict[str, torch.Tensor]:
    opts = ctx.options
    if pattern is not None and opts.blocksize % pattern[1]:
        raise ConfigError(f"prune.criterion_options.blocksize: {opts.blocksize} is not a multiple "
                          f"of prune.pattern.m={pattern[1]}; use e.g. 128")

    def layer(name: str, gram: Gram) -> torch.Tensor:
        p = ctx.params[name]
        flat = p.detach().reshape(p.shape[0], -1)
        new, kept = obs_prune(flat, hessian(gram), p.numel() - keep[name],
                              ~ctx.masks[name].reshape(flat.shape), opts.blocksize,
                              opts.percdamp, pattern)
        p.copy_(new.view_as(p))
        return kept.view_as(p)

    with torch.no_grad():
        return sequential(ctx.model, ctx.params, ctx.batches, layer)


@criterion("sparsegpt", options=SparseGPTOptions, compare=None, rewrite=_rewrite)
def sparsegpt(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """OBS saliency w² / U_jj² on the dense network (what the allocation ranks)."""
    grams = layer_grams(ctx.model, list(ctx.params), ctx.batches)
    out = {}
    for n, p in ctx.params.items():
        U, _ = inverse_factor(hessian(grams[n]), ctx.options.percdamp)
        flat = p.detach().reshape(p.shape[0], -1).to(U.dtype)
        out[n] = (flat ** 2 / U.diagonal() ** 2).view_as(p)
    return out
