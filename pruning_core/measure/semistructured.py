"""2:4 masks to ``torch.sparse.to_sparse_semi_structured``, and their measured speed-up.

A model pruned with ``prune.pattern: {n: 2, m: 4}`` holds, in every Linear weight, at most 2
nonzeros in each group of 4 consecutive inputs: the layout NVIDIA's sparse tensor cores run
(Ampere and newer). :func:`to_semi_structured` swaps such weights for PyTorch's compressed
semi-structured tensors, for inference only. Requirements, checked first, one line each
(:func:`check_semi_structured`, runs anywhere): a 2-D Linear weight, float16 or bfloat16, at
most 2 nonzeros per group of 4 along the input dim, rows a multiple of 32 and columns a
multiple of 64 (the CUTLASS backend's minimum shapes in ``torch/sparse/semi_structured.py``;
cuSPARSELt accepts smaller ones, but CUTLASS is the fallback that always exists). Then the
device: on anything but CUDA there is no semi-structured kernel, which is one line too.

:func:`nm_speedup` measures dense against semi-structured inference in alternating pairs
(``structured/speed.py``'s ``_paired_ms``). Off CUDA it measures nothing and says why: a 2:4
speed-up is never assumed (published figures range from 0.11x for a 4096² weight times one
vector, pytorch#111339, to 0.40-0.95x on an H100 in PyTorch's tutorial, to >1x for large
matmuls with many rows).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ..base.errors import ConfigError

SEMI_DTYPES = (torch.float16, torch.bfloat16)
#: CUTLASS minimum (and multiple) of weight (rows, cols) for float16/bfloat16
SEMI_SHAPE = (32, 64)
NO_KERNEL = ("no semi-structured sparse kernel on {device}: torch.sparse."
             "to_sparse_semi_structured needs a CUDA GPU with sparse tensor cores (compute "
             "capability >= 8.0)")


def check_semi_structured(name: str, weight: torch.Tensor) -> None:
    """Raise one-line ``ConfigError`` unless ``weight`` can become a 2:4 semi-structured one."""
    if weight.dim() != 2:
        raise ConfigError(f"semi-structured export: {name} is {weight.dim()}-D; only Linear "
                          "(2-D) weights convert")
    if weight.dtype not in SEMI_DTYPES:
        raise ConfigError(f"semi-structured export: {name} is {weight.dtype}; convert the model "
                          "to float16 or bfloat16 first (model.half())")
    rows, cols = weight.shape
    if rows % SEMI_SHAPE[0] or cols % SEMI_SHAPE[1]:
        raise ConfigError(f"semi-structured export: {name} has shape {(rows, cols)}; rows must "
                          f"be a multiple of {SEMI_SHAPE[0]} and columns of {SEMI_SHAPE[1]}; "
                          "leave this layer out")
    groups = (weight.detach().reshape(rows, cols // 4, 4) != 0).sum(-1)
    bad = groups > 2
    if bool(bad.any()):
        r, g = (int(i) for i in bad.nonzero()[0])
        raise ConfigError(f"semi-structured export: {name} row {r}, inputs {4 * g}-{4 * g + 3} "
                          f"hold {int(groups[r, g])} nonzeros; 2:4 allows at most 2 (prune with "
                          "prune.pattern: {n: 2, m: 4})")


def linear_layers(model: nn.Module, names: list[str] | None = None) -> dict[str, nn.Linear]:
    """The named Linear modules (default: every Linear), unknown or non-Linear names refused."""
    mods = dict(model.named_modules())
    if names is None:
        return {n: m for n, m in mods.items() if isinstance(m, nn.Linear)}
    out = {}
    for n in names:
        if not isinstance(mods.get(n), nn.Linear):
            raise ConfigError(f"semi-structured export: {n!r} is not a Linear module of the model")
        out[n] = mods[n]
    return out


def to_semi_structured(model: nn.Module, names: list[str] | None = None) -> list[str]:
    """Replace the named Linear layers' weights (default: every Linear) by
    ``to_sparse_semi_structured`` tensors, in place; returns the converted module names.
    Every weight is checked before any is converted; off CUDA this is one ``ConfigError``."""
    layers = linear_layers(model, names)
    for n, m in layers.items():
        check_semi_structured(f"{n}.weight", m.weight)
    for m in layers.values():
        if m.weight.device.type != "cuda":
            raise ConfigError("semi-structured export: " + NO_KERNEL.format(
                device=m.weight.device.type))
    from torch.sparse import to_sparse_semi_structured

    for m in layers.values():
        m.weight = nn.Parameter(to_sparse_semi_structured(m.weight.detach()),
                                requires_grad=False)
    return list(layers)


def eligible_layers(model: nn.Module, dtype: torch.dtype = torch.float16) -> list[str]:
    """Linear layers whose weight, cast to ``dtype``, passes :func:`check_semi_structured`."""
    out = []
    for n, m in linear_layers(model).items():
        try:
            check_semi_structured(n, m.weight.detach().to(dtype))
        except ConfigError:
            continue
        out.append(n)
    return out


@dataclass(frozen=True)
class NMSpeed:
    """Dense against 2:4 semi-structured inference: ``speedup`` = dense / sparse time, or
    None with ``note`` saying why nothing was measured."""

    latency_ms_dense: float | None
    latency_ms_nm: float | None
    speedup: float | None
    note: str


def nm_speedup(model: nn.Module, input_shape: tuple[int, ...], batch_size: int,
               device: str | torch.device, dtype: torch.dtype = torch.float16,
               warmup: int = 3, repeats: int = 10) -> NMSpeed:
    """Inference of a half-precision copy of ``model``, dense and with its eligible Linear
    layers semi-structured, in alternation. The caller's model is not changed."""
    from ..structured.speed import _forward, _paired_ms

    device = torch.device(device)
    if device.type != "cuda":
        return NMSpeed(None, None, None, NO_KERNEL.format(device=device.type))
    names = eligible_layers(model, dtype)
    if not names:
        return NMSpeed(None, None, None, "no Linear layer is 2:4 with a supported shape")
    dense = copy.deepcopy(model).to(device=device, dtype=dtype).eval()
    sparse = copy.deepcopy(dense)
    to_semi_structured(sparse, names)
    x = torch.randn(batch_size, *input_shape, device=device, dtype=dtype)
    sparse_ms, dense_ms, ratio = _paired_ms(_forward(sparse, x), _forward(dense, x), device,
                                            warmup, repeats)
    return NMSpeed(dense_ms, sparse_ms, ratio,
                   f"{len(names)} Linear layer(s) semi-structured, {dtype}, batch {batch_size}")
