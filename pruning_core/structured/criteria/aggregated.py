"""Channel-aggregated weight criteria: SNIP, GraSP and SynFlow summed over a channel's weights.

The weight scores come from ``pruning_core.masking.criteria`` unchanged (same options, same
defaults);
a channel's score is the sum of the scores of **every weight its removal zeroes**: the output
rows of the group's Conv/Linear "out" members and the input columns of its "in" members (see
:func:`pruning_core.structured.channel_masks`). GraSP stays signed (higher = keep).
"""

from __future__ import annotations

import torch

from ...masking.criteria import CRITERIA
from ...masking.criteria.base import ScoreContext
from ...masking.targets import prunable_parameters
from ..graph import member_weight
from ..masks import channel_masks
from .base import StructuredContext, structured_criterion, to_channels


def channel_sums(ctx: StructuredContext, weight_scores: dict[str, torch.Tensor]
                 ) -> dict[int, torch.Tensor]:
    """Σ of per-weight scores over each channel's rows (out members) and columns (in members)."""
    out: dict[int, torch.Tensor] = {}
    for g in ctx.groups:
        total = torch.zeros(g.size, dtype=torch.float64)
        for mem in g.members:
            found = member_weight(ctx.model, mem)
            if found is None or found[0] not in weight_scores:
                continue
            name, _, dim = found
            s = weight_scores[name].detach().double().cpu()
            per_position = s.transpose(0, dim).flatten(1).sum(1)  # (size along dim,)
            total += to_channels(g, mem, per_position)
        out[g.id] = total
    return out


def _aggregate(name: str):
    weight_criterion = CRITERIA.get(name)

    def score(ctx: StructuredContext) -> dict[int, torch.Tensor]:
        params = prunable_parameters(ctx.model)
        masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}
        masks.update(channel_masks(ctx.model, ctx.groups, ctx.keep))
        wctx = ScoreContext(model=ctx.model, params=params, masks=masks, batches=ctx.batches,
                            input_shape=ctx.input_shape, loss_fn=ctx.loss_fn,
                            generator=ctx.generator, options=ctx.options)
        return channel_sums(ctx, weight_criterion(wctx))

    score.__name__ = f"channel_{name}"
    score.__doc__ = f"Σ of ``{name}`` weight scores over each channel's weights."
    structured_criterion(name, options=weight_criterion.options,
                         needs_data=weight_criterion.needs_data,
                         signed=weight_criterion.signed)(score)


for _name in ("snip", "grasp", "synflow"):
    _aggregate(_name)
