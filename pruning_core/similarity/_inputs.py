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

from ..errors import ConfigError

Conv = Literal["pool", "flatten"]
CONV_MODES: tuple[str, ...] = ("pool", "flatten")

ArrayLike = torch.Tensor | np.ndarray


def as_examples(
    acts: ArrayLike, conv: Conv = "pool", dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """(N, F) stays; (N, C, *positions) -> (N, C) by ``pool`` or (N * positions, C) by
    ``flatten``. Returns ``dtype`` (float64 by default) on the input's device."""
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
    return t.to(dtype)


def paired(
    x: ArrayLike, y: ArrayLike, conv: Conv = "pool"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both inputs as float64 (examples x features) on x's device; same number of examples."""
    a, b = as_examples(x, conv), as_examples(y, conv)
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
