"""The WACV 2020 ("Is Pruning Compression?") variants, applied right after the last prune.

- ``none``: keep mask and weights.
- ``reinit``: post-pruning re-initialisation: the same mask, freshly drawn weights.
- ``random_sparse``: random sparse initialisation: a random mask with the same per-layer
  sparsities as the method's mask, freshly drawn weights.

Fresh weights are drawn with the model's own init (``model.options.init``: the reference
repository's, or PyTorch's default), through the same ``models.initialise`` that built it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..base.registry import Registry
from ..workloads.models import initialise
from .masks import MaskSet
from .select import keep_topk

Variant = Callable[[nn.Module, MaskSet, int], None]
VARIANTS: Registry[Variant] = Registry("variant")


def redraw_weights(model: nn.Module, seed: int) -> None:
    """Re-draw every parameter with the model's own init (the ``init`` it was built with, see
    ``models.initialise``) under a seed different from the original draw; the caller's RNG is
    left as it was. A model not built by ``create_model`` gets PyTorch's default."""
    initialise(model, seed=seed + 7919)


@VARIANTS.register("none")
def keep(model: nn.Module, masks: MaskSet, seed: int) -> None:
    return None


@VARIANTS.register("reinit")
def reinit(model: nn.Module, masks: MaskSet, seed: int) -> None:
    redraw_weights(model, seed)
    masks.apply()


@VARIANTS.register("random_sparse")
def random_sparse(model: nn.Module, masks: MaskSet, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed + 104729)
    new = {}
    for n, m in masks.masks.items():
        scores = torch.rand(m.shape, generator=gen).to(m.device)
        new[n] = keep_topk(scores, torch.ones_like(m), int(m.sum()))
    masks.replace(new)
    redraw_weights(model, seed)
    masks.apply()
