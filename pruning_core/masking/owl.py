"""OWL, Outlier Weighed Layerwise sparsity (Yin et al. 2024), the arithmetic of it.

Based on luuyin/OWL ``lib/prune_all.py`` (``prune_wanda_outlier``, ``prune_mag_outlier``,
``check_outlier_mean``; ``WrappedGPT.scaler_row`` of ``lib/layerwrapper.py``):

1. On calibration batches, each prunable layer's inputs give ‖X_j‖₂ per input feature j (over
   every token / position of every batch): :func:`input_norms`, by forward hooks.
2. Wanda's metric A = |W| · ‖X_j‖₂; a layer's *outlier ratio* D is the fraction of its entries
   with A > M · mean(A) (``Hyper_m`` M = 5): :func:`outlier_ratio`. The authors pool the
   metric of every Linear of a decoder block; ``owl_group: block`` does the same here (the
   group of a parameter is its name up to the first numeric part: ``h.0`` for
   ``h.0.attn.c_attn.weight``; a name without one is its own group), ``layer`` scores each
   tensor alone.
3. Densities: D is scaled to [0, 2λ] by (D - min D) / (max D - min D) · 2λ, centred, and added
   to 1 - s (``Lamda`` λ = 0.08): more outliers, lower sparsity, within s ± λ:
   :func:`owl_densities`. The authors' blocks all have the same size, so their plain mean is
   also the size-weighted mean; here groups differ in size and the centring is size-weighted, so
   that the densities keep exactly (1 - s) · N weights before rounding. All ratios equal
   (max = min, where the authors divide by zero) gives every group 1 - s.
4. A guard the authors' code lacks (their LLaMA blocks are many and equal, s <= 0.8): with few
   or unequal groups at high sparsity a density can reach 0 (gpt_tiny at s = 0.9: the LM head
   would keep nothing). If a density falls below ``MIN_SHARE`` (1/2) of the mean density
   1 - s, or above 1, every centred offset is shrunk by one common factor until all fit:
   the order, the centring and the exact total are kept.

The allocation that uses these (``owl`` in ``allocation.py``) rounds to exact counts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import torch
from torch import nn

log = logging.getLogger(__name__)

_NUMERIC = re.compile(r"^\d+$")
#: no group's density below this share of the mean density 1 - s (module doc, step 4)
MIN_SHARE = 0.5


def group_of(name: str) -> str:
    """A parameter's block: its name up to and including the first all-digit part."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if _NUMERIC.match(part):
            return ".".join(parts[: i + 1])
    return name


def _accumulate(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
    """Σ x_j² per input feature j of ``weight``'s layer, or None if ``x`` does not fit it."""
    x = x.detach().double()
    if weight.dim() == 2 and x.dim() >= 1 and x.shape[-1] == weight.shape[1]:
        return x.reshape(-1, weight.shape[1]).pow(2).sum(0)  # Linear, in_proj: (in,)
    if weight.dim() > 2 and x.dim() == weight.dim() and x.shape[1] == weight.shape[1]:
        dims = [d for d in range(x.dim()) if d != 1]
        return x.pow(2).sum(dims)  # Conv (groups 1): per input channel
    return None


@torch.no_grad()
def input_norms(model: nn.Module, params: dict[str, torch.Tensor],
                batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """{parameter name: ‖X_j‖₂ shaped to broadcast over the weight} from forward hooks on the
    module owning each parameter (its first positional input), in eval mode.

    A parameter whose module is never called with a fitting input (``nn.MultiheadAttention``
    calls ``out_proj``'s weight without calling the module) is missing from the result."""
    sums: dict[str, torch.Tensor] = {}
    handles = []

    def hook_for(name: str, weight: torch.Tensor):
        def hook(_module: nn.Module, args: tuple) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                return
            s = _accumulate(weight, args[0])
            if s is not None:
                sums[name] = sums[name] + s if name in sums else s
        return hook

    for name, weight in params.items():
        owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        handles.append(owner.register_forward_pre_hook(hook_for(name, weight)))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        for x, _ in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    out = {}
    for name, s in sums.items():
        shape = [1] * params[name].dim()
        shape[1] = -1
        out[name] = s.sqrt().to(params[name].device).view(shape)
    return out


def outlier_ratio(metric: torch.Tensor, m: float) -> float:
    """Fraction of the entries of ``metric`` above ``m`` times their mean
    (``check_outlier_mean``, as a fraction rather than a percentage)."""
    metric = metric.double().flatten()
    if metric.numel() == 0:
        return 0.0
    return float((metric > m * metric.mean()).sum()) / metric.numel()


def owl_densities(ratios: dict[str, float], sizes: dict[str, int], sparsity: float,
                  lam: float) -> dict[str, float]:
    """Density (1 - sparsity) per group from its outlier ratio (module doc, step 3)."""
    lo, hi = min(ratios.values()), max(ratios.values())
    if hi <= lo:
        return {g: 1.0 - sparsity for g in ratios}
    scaled = {g: (r - lo) / (hi - lo) * 2.0 * lam for g, r in ratios.items()}
    total = sum(sizes.values())
    mean = sum(scaled[g] * sizes[g] for g in scaled) / total if total else 0.0
    offset = {g: scaled[g] - mean for g in scaled}
    dense = 1.0 - sparsity
    shrink = 1.0
    for o in offset.values():  # dense + c * o within [MIN_SHARE * dense, 1] for every group
        if o < 0:
            shrink = min(shrink, (1.0 - MIN_SHARE) * dense / -o)
        elif o > 0:
            shrink = min(shrink, sparsity / o)
    if shrink < 1.0:
        log.info("owl: offsets shrunk by %.3f to keep every density within [%.4f, 1]", shrink,
                 MIN_SHARE * dense)
    return {g: dense + shrink * o for g, o in offset.items()}


def owl_metric(weight: torch.Tensor, mask: torch.Tensor,
               norms: torch.Tensor | None) -> torch.Tensor:
    """Wanda's |W| · ‖X_j‖ over the kept weights (|W| alone when no norm was captured)."""
    a = weight.detach().double().abs()
    if norms is not None:
        a = a * norms
    return a[mask.bool()]
