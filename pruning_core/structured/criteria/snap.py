"""SNAP (Verdenius et al. 2020): node sensitivity |∂L/∂g| of multiplicative gates g = 1.

Follows the authors' code, SNIP-it ``models/criterions/SNAP.py`` (``get_weight_saliencies``,
``insert_governing_variables``) and ``utils/snip_utils.py`` (``group_snip_conv2d_forward``):

- a gate of ones multiplies every Conv/Linear layer's output channels (before BatchNorm);
- the network is scored in **eval mode**;
- the loss of each scoring batch is divided by the number of batches and its gradient
  accumulated; the score is |Σ_b ∂(L_b / B)/∂g| divided by |Σ_b L_b / B| (the authors'
  ``norm_factor``, one positive factor that does not change a step's ranking).

Here the gates are forward hooks on the Conv/Linear "out" members of each group (removed before
returning) and the model runs through ``torch.func.functional_call`` with cloned buffers, so
nothing in the model changes. A group's channel score is the sum of its members' gate scores
(a residual group sums the gates of every conv added together). BatchNorm is not gated, as in
the authors' code (it skips ``Norm`` layers).

An attention head (``structured.heads``) is gated as one node: a gate on its ``d`` output
features before ``out_proj``, whose gradient at 1 is Σ over the head's ``out_proj`` columns of
W ⊙ ∂L/∂W (:func:`~pruning_core.structured.heads.head_gate_grads`), taken from the same
backward pass since the fused attention never calls ``out_proj`` as a module.
"""

from __future__ import annotations

import torch
from torch import nn

from ...masking.criteria.base import forward
from ..graph import WEIGHT_TYPES, is_head_group
from ..heads import head_gate_grads
from .base import StructuredContext, structured_criterion, to_channels


def _gate_shape(module: nn.Module, out: torch.Tensor) -> tuple[int, ...]:
    if isinstance(module, nn.Linear):
        return (-1,)  # (..., C): features last
    return (1, -1, *([1] * (out.dim() - 2)))  # (B, C, *spatial)


@structured_criterion("snap")
def snap(ctx: StructuredContext) -> dict[int, torch.Tensor]:
    model = ctx.model
    model.eval()
    gated = sorted({mem.module for g in ctx.groups for mem in g.members
                    if mem.role == "out"
                    and isinstance(model.get_submodule(mem.module), WEIGHT_TYPES)})
    device = next(model.parameters()).device
    gates = {}
    for name in gated:
        m = model.get_submodule(name)
        size = m.out_features if isinstance(m, nn.Linear) else m.out_channels
        gates[name] = torch.ones(size, device=device, requires_grad=True)

    def hook(name: str):
        def fn(module: nn.Module, _inp, out: torch.Tensor) -> torch.Tensor:
            return out * gates[name].view(_gate_shape(module, out))
        return fn

    head_proj = {mem.module: model.get_submodule(mem.module).weight
                 for g in ctx.groups if is_head_group(g) for mem in g.members if mem.role == "in"}
    frozen = [w for w in head_proj.values() if not w.requires_grad]  # a frozen out_proj too
    for w in frozen:
        w.requires_grad_(True)
    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in gated]
    try:
        grad = {n: torch.zeros_like(g) for n, g in gates.items()}
        grad.update({n: torch.zeros_like(w) for n, w in head_proj.items()})
        loss_sum = torch.zeros((), device=device)
        n_batches = len(ctx.batches)
        for x, y in ctx.batches:
            loss = ctx.loss_fn(forward(model, x), y) / n_batches
            wrt = [*gates.values(), *head_proj.values()]
            for acc, g in zip(grad.values(), torch.autograd.grad(loss, wrt), strict=True):
                acc.add_(g)
            loss_sum += loss.detach()
    finally:
        for h in handles:
            h.remove()
        for w in frozen:
            w.requires_grad_(False)
    norm = loss_sum.abs()
    node = {n: g.abs() / norm for n, g in grad.items() if n in gates}
    out: dict[int, torch.Tensor] = {}
    for g in ctx.groups:
        if is_head_group(g):
            mem = next(m for m in g.members if m.role == "in")
            per_head = to_channels(g, mem, head_gate_grads(head_proj[mem.module], grad[mem.module]))
            out[g.id] = per_head.abs() / norm
            continue
        out[g.id] = sum((to_channels(g, mem, node[mem.module]) for mem in g.members
                         if mem.module in node and mem.role == "out"),
                        torch.zeros(g.size, device=device))
    return out
