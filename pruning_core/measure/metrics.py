"""Size and cost of a (masked) model: parameters, FLOPs, per-layer sparsity, collapse."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ..masking.masks import MaskSet


def param_counts(model: nn.Module, masks: MaskSet) -> tuple[int, int]:
    """(all parameters, parameters left after pruning)."""
    total = sum(p.numel() for p in model.parameters())
    return total, total - (masks.numel() - masks.kept())


@dataclass(frozen=True)
class _DenseCount:
    """One counting pass: FLOPs per module (``FlopCounterMode``'s keys), total, attention."""

    per_module: dict[str, dict[Any, int]]
    total: int
    attention: dict[str, list[int]]


#: counting passes, by the network's structure (``_structure``); a pack's K members (one
#: architecture, one input shape) and a trial's repeated counts share one pass
_COUNTS: OrderedDict[tuple[Any, ...], _DenseCount] = OrderedDict()
_COUNTS_KEPT = 32


def _structure(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[Any, ...]:
    """What a counting pass depends on: every module's name, class and ``extra_repr`` (kernel
    sizes, strides, padding...), every parameter's and buffer's shape, the input shape and the
    device type. Weights' values and masks do not enter the dense count. A model whose forward
    reads a plain attribute that ``extra_repr`` does not show is not told apart from a model
    that differs only there: ``clear_flop_counts()`` forgets every pass."""
    mods = tuple((n, type(m).__module__, type(m).__qualname__, m.extra_repr())
                 for n, m in model.named_modules())
    shapes = tuple((n, tuple(t.shape)) for n, t in
                   [*model.named_parameters(), *model.named_buffers()])
    device = next(model.parameters()).device.type
    return (tuple(input_shape), device, mods, shapes)


def clear_flop_counts() -> None:
    """Forget the cached counting passes (``flops`` counts again on its next call)."""
    _COUNTS.clear()


@torch.no_grad()
def _dense_count(model: nn.Module, input_shape: tuple[int, ...]) -> _DenseCount:
    key = _structure(model, input_shape)
    hit = _COUNTS.get(key)
    if hit is not None:
        _COUNTS.move_to_end(key)
        return hit
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    x = torch.zeros((1, *input_shape), device=p.device, dtype=p.dtype)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        # the math kernel: the fused CPU/flash attention ops are not counted by FlopCounterMode
        with attention_flops(model) as per_param, sdpa_kernel(SDPBackend.MATH), \
                FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        model.train(was_training)
    counts = {k: dict(v) for k, v in counter.get_flop_counts().items()}
    out = _DenseCount(counts, int(counter.get_total_flops()), dict(per_param))
    _COUNTS[key] = out
    while len(_COUNTS) > _COUNTS_KEPT:
        _COUNTS.popitem(last=False)
    return out


def flops(model: nn.Module, input_shape: tuple[int, ...], masks: MaskSet) -> tuple[int, int]:
    """(dense FLOPs, effective FLOPs) for one example, counted by ``torch.utils.flop_counter``.

    Effective FLOPs scale each prunable layer's count by its density: the work a sparse kernel
    would do. (Physical speed-ups need structured pruning.) ``nn.MultiheadAttention`` runs its
    unfused path on the math attention kernel while counting (the fused fast path and kernels
    are invisible to the counter, so attention's own matmuls count too), and its
    projections (``in_proj_weight``, q/k/v, ``out_proj``) are counted per weight from the
    token counts it sees (see ``attention_flops``).

    The counting pass (a forward under ``FlopCounterMode``) depends only on the network's
    structure, so it runs once per structure and input shape (``_structure``) and is reused:
    a trial counts after every change of masks, and a pack's members share one pass.
    """
    count = _dense_count(model, input_shape)
    density = {n: 1.0 - s for n, s in masks.layer_sparsity().items()}
    root = type(model).__name__  # FlopCounterMode's module rows: "<class>.<module path>"
    removed = 0.0
    for pname, d in density.items():
        if pname in count.attention:  # attention projections: their own count, q/k/v apart
            removed += _attention_removed(count.attention[pname], masks[pname])
            continue
        mod = pname.rsplit(".", 1)[0] if "." in pname else ""
        key = f"{root}.{mod}" if mod else "Global"
        removed += sum(count.per_module.get(key, {}).values()) * (1.0 - d)
    return count.total, round(count.total - removed)


def perplexity(loss: float) -> float:
    """exp(mean cross-entropy in nats); inf past float64's range, NaN stays NaN."""
    return math.exp(loss) if loss < 709.0 else (math.inf if loss == loss else math.nan)
@contextmanager
def attention_flops(model: nn.Module) -> Iterator[dict[str, list[int]]]:
    """While active, fills ``{parameter name: [FLOPs per row block]}`` for every
    ``nn.MultiheadAttention`` projection, from the shapes each forward call sees:
    ``in_proj_weight`` (3E, E) has three blocks (q, k, v: 2·E·E per query/key/value token),
    ``q/k/v_proj_weight`` and ``out_proj.weight`` one each (2·E·fan_in per token)."""
    out: dict[str, list[int]] = {}

    def hook(prefix: str) -> Callable[..., None]:
        def pre(mod: nn.MultiheadAttention, args: tuple, kwargs: dict) -> None:
            q, k, v = (list(args) + [kwargs.get(a) for a in ("query", "key", "value")
                                     if a in kwargs])[:3]
            e = mod.embed_dim
            tokens = [t.numel() // t.shape[-1] for t in (q, k, v)]
            if mod.in_proj_weight is not None:
                add(prefix + "in_proj_weight", [2 * e * e * n for n in tokens])
            else:
                for attr, t, n in zip(("q", "k", "v"), (q, k, v), tokens, strict=True):
                    add(f"{prefix}{attr}_proj_weight", [2 * e * t.shape[-1] * n])
            add(prefix + "out_proj.weight", [2 * e * e * tokens[0]])
        return pre

    def add(name: str, blocks: list[int]) -> None:
        old = out.setdefault(name, [0] * len(blocks))
        out[name] = [a + b for a, b in zip(old, blocks, strict=True)]

    handles = [m.register_forward_pre_hook(hook(f"{n}." if n else ""), with_kwargs=True)
               for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    try:
        yield out
    finally:
        for h in handles:
            h.remove()


def _attention_removed(blocks: list[int], mask: torch.Tensor) -> float:
    """FLOPs a mask removes from a projection counted as row blocks (q, k, v)."""
    parts = mask.chunk(len(blocks), dim=0)
    return sum(f * (1.0 - float(m.sum()) / m.numel()) for f, m in zip(blocks, parts, strict=True))
