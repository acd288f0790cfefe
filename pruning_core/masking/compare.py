"""Comparison groups: within which set of weights the top-k selection ranks scores.

The allocation decides how many weights a layer keeps; the comparison group decides among which
weights they are chosen. One registry entry per group (``prune.compare``):

- ``layer`` (default for most criteria): one top-k over the whole layer (``select.keep_topk``);
- ``row``: each output row (``weight[i]``, all its inputs flattened) keeps the same count, the
  comparison group of Wanda (Sun et al. 2023; locuslab/wanda ``lib/prune.py``, ``prune_wanda``
  sorts ``W_metric`` along ``dim=-1``). A layer keeping ``k`` weights over ``R`` rows keeps
  ``k // R`` per row and one more in the first ``k % R`` rows (lowest row index first);
- ``nm``: N:M semi-structured sparsity (``prune.pattern``): in every group of M consecutive
  weights along a row (a Linear's input dim; a conv's input channels x kernel, flattened as
  ``weight.flatten(1)``) the N highest scores are kept. The allocation's count is not read.

Every selection nests: a weight pruned before stays pruned (so a row or group that was already
sparser keeps fewer). Ties go to the lower position, as in ``select.top_mask``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..base.errors import ConfigError
from ..base.registry import Registry
from .select import keep_topk, sanitize

Pattern = tuple[int, int]  # (n kept, m group size)
Select = Callable[[torch.Tensor, torch.Tensor, int, "Pattern | None"], torch.Tensor]

COMPARISONS: Registry[Select] = Registry("comparison group")


def _rows(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(R, C) float scores, already-pruned weights at -inf (rank below every kept one)."""
    s = sanitize(scores).reshape(scores.shape[0] if scores.dim() > 1 else 1, -1)
    return s.masked_fill(~mask.reshape(s.shape), float("-inf"))


def _rank(s: torch.Tensor) -> torch.Tensor:
    """Rank of each entry along the last dim, 0 = highest; ties by lower position."""
    order = torch.sort(s, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(s.shape[-1], device=s.device).expand_as(order))
    return ranks


@COMPARISONS.register("layer")
def per_layer(scores: torch.Tensor, mask: torch.Tensor, keep: int,
              pattern: Pattern | None = None) -> torch.Tensor:
    return keep_topk(scores, mask, keep)


def row_counts(rows: int, keep: int) -> torch.Tensor:
    """How many weights each of ``rows`` rows keeps when the layer keeps ``keep``."""
    base, extra = divmod(max(0, keep), rows)
    counts = torch.full((rows,), base, dtype=torch.long)
    counts[:extra] += 1
    return counts


@COMPARISONS.register("row")
def per_row(scores: torch.Tensor, mask: torch.Tensor, keep: int,
            pattern: Pattern | None = None) -> torch.Tensor:
    s = _rows(scores, mask)
    counts = row_counts(s.shape[0], keep).to(s.device)
    chosen = _rank(s) < counts[:, None]
    return (chosen & mask.reshape(s.shape)).view_as(mask)


@COMPARISONS.register("nm")
def n_of_m(scores: torch.Tensor, mask: torch.Tensor, keep: int,
           pattern: Pattern | None = None) -> torch.Tensor:
    if pattern is None:
        raise ConfigError("prune.compare: nm needs prune.pattern (e.g. {n: 2, m: 4})")
    n, m = pattern
    s = _rows(scores, mask)
    groups = s.reshape(s.shape[0], -1, m)  # (R, C / M, M)
    chosen = (_rank(groups) < n).reshape(s.shape)
    return (chosen & mask.reshape(s.shape)).view_as(mask)


def check_pattern(shapes: dict[str, tuple[int, ...]], pattern: Pattern) -> None:
    """Every layer's row length must be a multiple of M (one line naming the first that is not)."""
    m = pattern[1]
    for name, shape in shapes.items():
        row = math.prod(shape[1:]) if len(shape) > 1 else math.prod(shape)
        if row % m:
            raise ConfigError(
                f"prune.pattern: {name} has rows of {row} weights, not a multiple of m={m}; "
                f"exclude it (prune.exclude: [{name!r}]) or pick an m that divides {row}"
            )


def nm_groups_ok(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Per group of M along each row: does it hold at most N nonzeros? (R, C / M) bool."""
    w = weight.detach().reshape(weight.shape[0] if weight.dim() > 1 else 1, -1)
    return (w.reshape(w.shape[0], -1, m) != 0).sum(-1) <= n
