"""Attention heads as channel groups: one group per ``nn.MultiheadAttention``, one node per head.

Head ``h`` of an attention with ``E = num_heads * d`` owns rows ``[h*d, (h+1)*d)`` of each of
q, k and v in ``in_proj_weight`` (rows ``h*d + j``, ``E + h*d + j``, ``2E + h*d + j``) and the
same ``d`` input columns of ``out_proj.weight``. A group is therefore two members: the attention
module itself (``kind`` "attention", role "out": rows of ``in_proj_weight``) and its ``out_proj``
(an ``nn.Linear``, role "in": columns); ``graph.head_group`` builds it from the
:class:`HeadLayout` found here. Every structured criterion, the selection (a global
top-k with at least one node kept per group, so at least one head per attention layer) and the
weight masks then work on heads as on channels.

Why our own groups and not torch-pruning's: its ``MultiheadAttentionPruner``
(``torch_pruning/pruner/function.py``) prunes ``embed_dim``, the residual stream's width, and
its ``prune_num_heads`` (``pruner/algorithms/base_pruner.py``) works on separate q/k/v
``nn.Linear`` layers whose ``num_heads`` the user passes in; ``nn.MultiheadAttention`` applies
``out_proj`` inside ``F.multi_head_attention_forward``, which its tracer never sees. We follow
its head layout (a head is ``d`` consecutive channels of each of q, k, v) but score a head with
the *sum* over its weights, as every structured criterion here reduces over a group's members
(torch-pruning averages; the mean is the sum over ``3d`` rows divided by a constant per layer).

Removing a head zeroes its q/k/v rows and its ``out_proj`` columns. Its biases stay: with zero
weights q, k and v are constants, so the head outputs ``b_v`` at every token, which the zeroed
``out_proj`` columns then drop; the masked network computes the network without that head.
Compaction (:func:`pruning_core.structured.compact`) leaves attention at full size (zeroed
heads kept): ``nn.MultiheadAttention`` needs ``embed_dim == num_heads * head_dim`` for its
input and output too, so fewer heads would need a different module.

Attention with separate q/k/v weights (``kdim``/``vdim`` set) is not grouped yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadLayout:
    """Where an attention's heads live (``structured.graph`` turns it into a head group)."""

    attention: str  # the nn.MultiheadAttention's module name
    out_proj: str
    num_heads: int
    head_dim: int

    def rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows of ``in_proj_weight``, head of each): q, k and v rows of every head."""
        e = self.num_heads * self.head_dim
        return torch.arange(3 * e), self.columns()[1].repeat(3)

    def columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(input columns of ``out_proj``, head of each)."""
        e = self.num_heads * self.head_dim
        return torch.arange(e), torch.arange(self.num_heads).repeat_interleave(self.head_dim)


def attention_heads(model: nn.Module, ignored: set[str]) -> list[HeadLayout]:
    """Every ``nn.MultiheadAttention`` of ``model`` with a packed ``in_proj_weight`` and at
    least two heads. An attention whose name or ``out_proj`` is in ``ignored`` (module names)
    is skipped."""
    out: list[HeadLayout] = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.MultiheadAttention) or m.num_heads < 2:
            continue
        out_proj = f"{name}.out_proj" if name else "out_proj"
        if name in ignored or out_proj in ignored:
            continue
        if m.in_proj_weight is None:
            log.warning("structured: attention %r has separate q/k/v weights; its heads stay "
                        "unpruned", name)
            continue
        out.append(HeadLayout(name, out_proj, m.num_heads, m.head_dim))
    return out


def head_gate_grads(out_proj_weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """∂L/∂g_c at g = 1 for a gate g_c on each input feature c of ``out_proj`` (the attention's
    output before ``out_proj``): scaling feature c scales column c of the weight, so
    ∂L/∂g_c = Σ_i W_ic ∂L/∂W_ic. Summed over a head's ``d`` features it is the gradient of one
    gate on the whole head (SNAP's node gate, the head being the node)."""
    return (out_proj_weight.detach() * grad).sum(0)
