"""Top-k selection with nesting and deterministic ties."""

from __future__ import annotations

import torch


def sanitize(scores: torch.Tensor) -> torch.Tensor:
    """Finite float scores: NaN ranks last among kept weights (below -inf), +-inf clamp near the
    dtype's range, so already-pruned weights (-inf after masking) still rank below all of them."""
    scores = scores.detach().float()
    big = torch.finfo(scores.dtype).max
    return torch.nan_to_num(scores, nan=-big, posinf=big, neginf=-big / 2)


def ranked(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Flat scores with already-pruned weights at -inf so they rank below every kept weight."""
    s = sanitize(scores).flatten()
    return s.masked_fill(~mask.flatten(), float("-inf"))


def order(flat: torch.Tensor) -> torch.Tensor:
    """Indices best-first; ties broken by position (stable), so selection is deterministic."""
    return torch.argsort(flat, descending=True, stable=True)


def keep_topk(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """A mask keeping the ``k`` highest-scoring weights among those ``mask`` still keeps."""
    k = max(0, min(int(k), int(mask.sum())))  # never revive a pruned weight
    flat = ranked(scores, mask)
    new = torch.zeros_like(flat, dtype=torch.bool)
    new[order(flat)[:k]] = True
    return new.view_as(mask)
