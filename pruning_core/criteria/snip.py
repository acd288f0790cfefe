"""SNIP (Lee et al. 2019): connection sensitivity |∂L/∂θ ⊙ θ| summed over a few batches.

SNIP-it (Verdenius et al. 2020) is SNIP applied with the ``snip_it`` schedule: each step rescores
the masked network. The score equals |∂L/∂mask| with a mask of ones, computed here directly.
"""

from __future__ import annotations

import torch

from .base import ScoreContext, criterion, forward


@criterion("snip")
def snip(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    ctx.model.train()  # batch statistics, as at initialisation in the paper
    names = list(ctx.params)
    weights = [ctx.params[n] for n in names]
    scores = [torch.zeros_like(w) for w in weights]
    for x, y in ctx.batches:
        loss = ctx.loss_fn(forward(ctx.model, x), y)
        grads = torch.autograd.grad(loss, weights)
        for s, g, w in zip(scores, grads, weights, strict=True):
            s.add_((g * w.detach()).abs_())
    return dict(zip(names, scores, strict=True))
