"""Physical compaction: remove pruned channels for real, giving a smaller dense ``nn.Module``.

We slice with ``index_select`` ourselves (weights, biases, BatchNorm parameters and running
statistics) instead of calling torch-pruning's ``group.prune()``: the slicing then needs no
dependency graph, so a compact model is rebuilt from the dense architecture and the stored kept
indices alone (:func:`rebuild`), and the same plan slices optimiser state
(:mod:`pruning_core.structured.optim`). Like the authors' SNAP (``handle_output``,
``handle_input``, ``handle_batch_norm`` in SNIP-it ``models/criterions/SNAP.py``), but driven
by coupled groups, so residual networks work.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..base.errors import ConfigError
from .graph import ChannelGroup, is_depthwise
from .masks import KeepIndices, keep_indices
from .select import Keep

#: (dim, kept positions) per tensor, by full parameter / buffer name
SlicePlan = dict[str, list[tuple[int, torch.Tensor]]]


def compact(model: nn.Module, groups: list[ChannelGroup], keep: Keep) -> nn.Module:
    """A new, smaller model without the removed channels (``model`` is not changed)."""
    return rebuild(model, keep_indices(model, groups, keep))


def rebuild(dense_model: nn.Module, indices: KeepIndices, inplace: bool = False) -> nn.Module:
    """The compact model from a dense one of the same architecture and :func:`keep_indices`.

    With ``inplace=False`` the dense model is left unchanged (unsliced tensors are copied, the
    sliced ones are new). Gradients of sliced parameters are dropped. Raises ``ConfigError`` if
    a layer is missing or its size does not match."""
    plan = slice_plan(dense_model, indices)
    tensors = {**dict(dense_model.named_parameters()), **dict(dense_model.named_buffers())}
    sliced = {name: _sliced(tensors[name], cuts) for name, cuts in plan.items()}
    if inplace:
        model = dense_model
        for name, new in sliced.items():
            owner, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(owner), leaf, new)
    else:
        # the memo hands deepcopy the sliced tensors: the dense ones are never copied
        model = copy.deepcopy(dense_model, {id(tensors[n]): new for n, new in sliced.items()})
    for name, entry in indices.items():
        _resize(model.get_submodule(name), entry)
    return model


@torch.no_grad()
def _sliced(old: torch.Tensor, cuts: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
    new = old.detach()
    for dim, idx in cuts:
        new = new.index_select(dim, idx.to(new.device))
    new = new.contiguous()
    if isinstance(old, nn.Parameter):
        return nn.Parameter(new, requires_grad=old.requires_grad)
    return new


def slice_plan(model: nn.Module, indices: KeepIndices) -> SlicePlan:
    """Which dims of which tensors keep which positions; checks sizes against ``model``."""
    plan: SlicePlan = {}
    for name, entry in indices.items():
        try:
            m = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"kept channel indices name layer {name!r}, which the model "
                              "does not have") from None
        for role in ("out", "in"):
            if role not in entry:
                continue
            size = _dense_size(m, role)
            if entry.get(f"{role}_size", size) != size:
                raise ConfigError(f"kept channel indices: layer {name!r} has {size} "
                                  f"{role}put channels, the indices were saved for "
                                  f"{entry[f'{role}_size']}")
            idx = torch.as_tensor(entry[role], dtype=torch.long)
            if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= size:
                raise ConfigError(f"kept channel indices: layer {name!r} {role}: positions "
                                  f"must be within 0..{size - 1} and not empty")
            for leaf, dim in _dims(m, role):
                if getattr(m, leaf, None) is not None:
                    plan.setdefault(f"{name}.{leaf}" if name else leaf, []).append((dim, idx))
    return plan


def _dims(m: nn.Module, role: str) -> list[tuple[str, int]]:
    """(tensor attribute, dim) that a removed channel of ``role`` shrinks."""
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return [("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)]
    if role == "out" or is_depthwise(m):
        return [("weight", 0), ("bias", 0)]
    return [("weight", 1)]  # Conv / Linear input columns


def _dense_size(m: nn.Module, role: str) -> int:
    if isinstance(m, nn.Linear):
        return m.out_features if role == "out" else m.in_features
    if isinstance(m, nn.modules.conv._ConvNd):
        return m.out_channels if role == "out" else m.in_channels
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return m.num_features
    raise ConfigError(f"kept channel indices: cannot slice layer type {type(m).__name__}")


def _resize(m: nn.Module, entry: dict) -> None:
    """Update the size attributes that ``extra_repr`` and shape checks read."""
    out = len(entry["out"]) if "out" in entry else None
    inp = len(entry["in"]) if "in" in entry else None
    if isinstance(m, nn.Linear):
        m.out_features = out if out is not None else m.out_features
        m.in_features = inp if inp is not None else m.in_features
    elif isinstance(m, nn.modules.conv._ConvNd):
        if is_depthwise(m):
            m.in_channels = m.out_channels = m.groups = out if out is not None else m.groups
        else:
            m.out_channels = out if out is not None else m.out_channels
            m.in_channels = inp if inp is not None else m.in_channels
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        m.num_features = out if out is not None else m.num_features
