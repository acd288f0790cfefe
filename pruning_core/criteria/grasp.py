"""GraSP (Wang et al. 2020): gradient-signal preservation via the Hessian-gradient product.

Official code: score_remove = -θ ⊙ Hg and it removes the *highest* -θ ⊙ Hg. In our convention
(higher = keep) the keep score is therefore +θ ⊙ Hg. Logits are divided by a temperature (200).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from .base import ScoreContext, criterion, forward


class GraspOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(200.0, gt=0)


@criterion("grasp", options=GraspOptions)
def grasp(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    ctx.model.train()
    t = ctx.options.temperature
    names = list(ctx.params)
    weights = [ctx.params[n] for n in names]
    # g: the gradient over all scoring batches (a constant in the second pass)
    g = [torch.zeros_like(w) for w in weights]
    for x, y in ctx.batches:
        grads = torch.autograd.grad(ctx.loss_fn(forward(ctx.model, x) / t, y), weights)
        for acc, gi in zip(g, grads, strict=True):
            acc.add_(gi)
    # Hg = ∂(gᵀ ∇L)/∂θ by double backward, batch by batch
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in ctx.batches:
        grads = torch.autograd.grad(ctx.loss_fn(forward(ctx.model, x) / t, y), weights,
                                    create_graph=True)
        z = sum((gi * c).sum() for gi, c in zip(grads, g, strict=True))
        for acc, h in zip(hg, torch.autograd.grad(z, weights), strict=True):
            acc.add_(h)
    return {n: w.detach() * h for n, w, h in zip(names, weights, hg, strict=True)}
