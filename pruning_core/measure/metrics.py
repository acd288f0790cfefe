"""Size and cost of a (masked) model: parameters, FLOPs, per-layer sparsity, collapse."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..masking.masks import MaskSet


def param_counts(model: nn.Module, masks: MaskSet) -> tuple[int, int]:
    """(all parameters, parameters left after pruning)."""
    total = sum(p.numel() for p in model.parameters())
    return total, total - (masks.numel() - masks.kept())


@torch.no_grad()
def flops(model: nn.Module, input_shape: tuple[int, ...], masks: MaskSet) -> tuple[int, int]:
    """(dense FLOPs, effective FLOPs) for one example, counted by ``torch.utils.flop_counter``.

    Effective FLOPs scale each prunable layer's count by its density: the work a sparse kernel
    would do. (Physical speed-ups need structured pruning.)
    """
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    x = torch.zeros((1, *input_shape), device=p.device, dtype=p.dtype)
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    dense = int(counter.get_total_flops())
    density = {n: 1.0 - s for n, s in masks.layer_sparsity().items()}
    removed = 0.0
    for pname, d in density.items():
        mod = pname.rsplit(".", 1)[0] if "." in pname else ""
        key = f"{root}.{mod}" if mod else "Global"
        removed += sum(counts.get(key, {}).values()) * (1.0 - d)
    return dense, round(dense - removed)


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy in nats); inf past float64's range, NaN stays NaN."""
    return math.exp(loss) if loss < 709.0 else (math.inf if loss == loss else math.nan)
