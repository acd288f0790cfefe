"""Channels back to weights: bool masks for ``pruning_core.masking.masks.MaskSet``, kept indices per
layer (what a compact model is rebuilt from), and the two sparsities structured runs report.

A removed channel zeroes the output rows of every "out" Conv/Linear member of its group and the
input columns of every "in" member. BatchNorm parameters and biases of a removed channel are
left alone: every layer that reads the channel has its columns zeroed, so they cannot reach the
output, and the masked network computes the same function as the compacted one. Attention
heads (``structured.heads``) are masked but not compacted: ``keep_indices`` leaves them out.
"""

from __future__ import annotations

import torch
from torch import nn

from ..masking.targets import prunable_parameters
from .graph import ChannelGroup, is_depthwise, is_head_group, member_weight
from .select import Keep

#: per layer name: {"out": kept positions, "in": kept positions, "out_size"/"in_size": dense}
KeepIndices = dict[str, dict[str, list[int] | int]]


def channel_masks(model: nn.Module, groups: list[ChannelGroup],
                  keep: Keep) -> dict[str, torch.Tensor]:
    """``{weight name: bool mask}`` for the Conv/Linear weights of every group member."""
    masks: dict[str, torch.Tensor] = {}
    for g in groups:
        removed = ~keep[g.id].cpu()
        for mem in g.members:
            found = member_weight(model, mem)
            if found is None:
                continue  # BatchNorm: see the module docstring
            name, weight, dim = found
            mask = masks.setdefault(name, torch.ones_like(weight, dtype=torch.bool))
            pos = mem.index[removed[mem.channel]].to(mask.device)
            mask.index_fill_(dim, pos, False)
    return masks


def weight_sparsity(model: nn.Module, masks: dict[str, torch.Tensor]) -> float:
    """Fraction of all Conv/Linear weights that ``masks`` removes."""
    params = prunable_parameters(model)
    total = sum(p.numel() for p in params.values())
    removed = sum(int((~masks[n]).sum()) for n in params if n in masks)
    return removed / total if total else 0.0


def keep_indices(model: nn.Module, groups: list[ChannelGroup], keep: Keep) -> KeepIndices:
    """Kept positions per layer and role (sorted), plus the dense sizes, as plain ints: the
    JSON-able spec :func:`pruning_core.structured.rebuild` rebuilds a compact model from."""
    removed: dict[tuple[str, str], set[int]] = {}
    for g in groups:
        if is_head_group(g):
            continue  # attention keeps its size, zeroed heads included (structured.heads)
        gone = ~keep[g.id].cpu()
        for mem in g.members:
            role = "out" if is_depthwise(model.get_submodule(mem.module)) else mem.role
            removed.setdefault((mem.module, role), set()).update(
                mem.index[gone[mem.channel]].tolist())
    out: KeepIndices = {}
    for (name, role), gone in removed.items():
        size = _size(model.get_submodule(name), role)
        entry = out.setdefault(name, {})
        entry[role] = [i for i in range(size) if i not in gone]
        entry[f"{role}_size"] = size
    return out


def _size(m: nn.Module, role: str) -> int:
    if isinstance(m, nn.Linear):
        return m.out_features if role == "out" else m.in_features
    if isinstance(m, nn.modules.conv._ConvNd):
        return m.out_channels if role == "out" else m.in_channels
    return m.num_features  # BatchNorm
