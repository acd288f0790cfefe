"""Shared input handling: activations of any layer -> a float64 (examples x features) matrix.

Conv activations (N, C, *positions) become 2-D in one of two ways (``conv=``):

- ``"pool"`` (default): mean over positions -> (N, C). One row per input example, so the rows
  are independent draws (what CCA's and HSIC's estimators assume), any two layers can be paired
  whatever their spatial size (layer x layer heatmaps across depth need that), and memory is
  N x C. It discards *where* a feature fires.
- ``"flatten"``: every position is an example, as in the SVCCA tutorial
  (google/svcca, tutorials/002) -> (N * positions, C). It keeps spatial detail and gives many
  more rows (SVCCA needs rows >= channels), but rows of one image are correlated and both layers
  of a pair must have the same spatial size.

Both keep *channels* as the features. Kornblith et al. 2019 instead reshape to
(N, C * positions) for CKA; that is not offered here (it needs Gram-size memory).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from ..base.errors import ConfigError

Conv = Literal["pool", "flatten"]
CONV_MODES: tuple[str, ...] = ("pool", "flatten")

ArrayLike = torch.Tensor | np.ndarray


def as_examples(
    acts: ArrayLike, conv: Conv = "pool", dtype: torch.dtype | None = torch.float64
) -> torch.Tensor:
    """(N, F) stays; (N, C, *positions) -> (N, C) by ``pool`` or (N * positions, C) by
    ``flatten``. Returns ``dtype`` (float64 by default) on the input's device; ``dtype=None``
    keeps a floating input's dtype (no copy) and makes other dtypes float64."""
    if conv not in CONV_MODES:
        raise ConfigError(f"conv: unknown mode {conv!r}; valid: {', '.join(CONV_MODES)}")
    t = torch.as_tensor(acts).detach()
    if t.dim() < 2:
        raise ConfigError(
            f"activations must be (examples, features) or (examples, channels, ...); "
            f"got shape {tuple(t.shape)}"
        )
    if t.dim() > 2:
        if conv == "pool":
            t = t.flatten(2).mean(dim=2)  # (N, C, P) -> (N, C)
        else:
            t = t.flatten(2).transpose(1, 2).reshape(-1, t.shape[1])  # (N*P, C)
    if dtype is None:
        dtype = t.dtype if t.is_floating_point() else torch.float64
    return t.to(dtype)


def paired(
    x: ArrayLike, y: ArrayLike, conv: Conv = "pool", dtype: torch.dtype | None = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both inputs as (examples x features) on x's device, float64 by default (``dtype=None``:
    as :func:`as_examples`); same number of examples."""
    a, b = as_examples(x, conv, dtype), as_examples(y, conv, dtype)
    if a.shape[0] != b.shape[0]:
        hint = (
            " With conv='flatten' the layers' spatial sizes must match; conv='pool' pairs any two."
            if conv == "flatten" else ""
        )
        raise ConfigError(
            f"x and y must hold the same examples in the same order: x has {a.shape[0]} rows, "
            f"y has {b.shape[0]}.{hint}"
        )
    return a, b.to(a.device)


def centre(x: torch.Tensor) -> torch.Tensor:
    """Subtract the column means (each feature centred over the examples)."""
    return x - x.mean(dim=0, keepdim=True)


#: elements per float64 temporary of :func:`centred` (8 MiB)
_CHUNK_ELEMENTS = 1 << 20


def centred(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` minus its column means, returned as ``dtype``: one output tensor, no full-size
    temporary. The means are accumulated in float64 and subtracted in float64 (row chunks of
    at most 8 MiB), then rounded once to ``dtype``: a float32 result carries only its own
    rounding, even for features whose mean is far larger than their spread."""
    mean = x.mean(dim=0, keepdim=True, dtype=torch.float64)
    if x.dtype == torch.float64 and dtype == torch.float64:
        return x - mean
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    rows = max(1, _CHUNK_ELEMENTS // max(1, x.shape[1]))
    for start in range(0, x.shape[0], rows):
        out[start : start + rows] = x[start : start + rows].to(torch.float64) - mean
    return out
