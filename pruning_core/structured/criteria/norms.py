"""Data-free channel baselines: filter norms (Li et al. 2017) and random.

Li et al., "Pruning Filters for Efficient ConvNets" (ICLR 2017), rank filter j of a layer by
s_j = Σ |F_j| (the L1 norm of its kernel weights). Here a channel's score is the sum over the
group's Conv/Linear "out" members of that member's filter norm (its weight row: all input
channels and kernel positions); input columns of the layers that read the channel are not
counted (the paper scores filters only). ``l2_filter`` uses ‖F_j‖₂ per member, then the same sum.
An attention head's filters are its ``3 d`` rows of q, k and v in ``in_proj_weight``; its score
is the sum of their norms (``structured.heads``).
"""

from __future__ import annotations

import torch

from ..graph import member_weight
from .base import StructuredContext, structured_criterion, to_channels


def _filter_norms(ctx: StructuredContext, p: int) -> dict[int, torch.Tensor]:
    out: dict[int, torch.Tensor] = {}
    for g in ctx.groups:
        total = torch.zeros(g.size)
        for mem in g.members:
            found = member_weight(ctx.model, mem)
            if mem.role != "out" or found is None:
                continue
            rows = found[1].detach().flatten(1).norm(p=p, dim=1).float().cpu()  # (C_out,)
            total += to_channels(g, mem, rows)
        out[g.id] = total
    return out


@structured_criterion("l1_filter", needs_data=False)
def l1_filter(ctx: StructuredContext) -> dict[int, torch.Tensor]:
    return _filter_norms(ctx, 1)


@structured_criterion("l2_filter", needs_data=False)
def l2_filter(ctx: StructuredContext) -> dict[int, torch.Tensor]:
    return _filter_norms(ctx, 2)


@structured_criterion("random", needs_data=False)
def random(ctx: StructuredContext) -> dict[int, torch.Tensor]:
    """I.i.d. uniform channel scores from the run's seeded generator."""
    return {g.id: torch.rand(g.size, generator=ctx.generator) for g in ctx.groups}
