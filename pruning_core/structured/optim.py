"""Optimiser surgery after compaction: a new optimiser over the compact model's parameters with
the per-parameter state (SGD momentum, Adam's ``exp_avg`` / ``exp_avg_sq``) sliced to the kept
channels, so training continues as if the removed channels had never existed.
"""

from __future__ import annotations

import torch
from torch import nn

from .compact import slice_plan
from .masks import KeepIndices


def compact_optimizer_state(old_optimizer: torch.optim.Optimizer, old_model: nn.Module,
                            new_model: nn.Module, keep: KeepIndices) -> torch.optim.Optimizer:
    """The same optimiser class and hyper-parameters (per param group) over ``new_model``, with
    every state tensor shaped like its parameter sliced as the parameter was; other state
    (Adam's ``step``) is copied. Parameters are matched by name."""
    names = {id(p): n for n, p in old_model.named_parameters()}
    old_params = dict(old_model.named_parameters())
    new_params = dict(new_model.named_parameters())
    plan = slice_plan(old_model, keep)
    groups = []
    for group in old_optimizer.param_groups:
        hyper = {k: v for k, v in group.items() if k != "params"}
        groups.append({**hyper, "params": [new_params[names[id(p)]] for p in group["params"]]})
    new = type(old_optimizer)(groups, **old_optimizer.defaults)
    for p, state in old_optimizer.state.items():
        name = names[id(p)]
        target = new_params[name]
        new.state[target] = {k: _slice(v, old_params[name], plan.get(name, []))
                             for k, v in state.items()}
    return new


def _slice(value, param: torch.Tensor, cuts: list[tuple[int, torch.Tensor]]):
    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach().clone()
    if value.shape != param.shape:
        return value  # a scalar ``step`` and the like
    for dim, idx in cuts:
        value = value.index_select(dim, idx.to(value.device))
    return value.contiguous()
