"""SynFlow (Tanaka et al. 2020): iterative synaptic flow, data-free.

Every parameter and float buffer is replaced by its absolute value (signs are untouched in the
model: we never write to it), an all-ones input of the data's shape is pushed through the network
in eval mode, R = sum(outputs), and score = |θ ⊙ ∂R/∂θ|. Deep nets overflow float32: with
``precision: auto`` a non-finite result is recomputed in float64.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from .base import ScoreContext, criterion


class SynflowOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    precision: Literal["auto", "float32", "float64"] = "auto"


def _scores(ctx: ScoreContext, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    model = ctx.model
    model.eval()
    state = {n: t.detach().abs().to(dtype)
             for n, t in [*model.named_parameters(), *model.named_buffers()]
             if t.is_floating_point()}
    names = list(ctx.params)
    leaves = [state[n].requires_grad_() for n in names]
    device = ctx.params[names[0]].device
    x = torch.ones((1, *ctx.input_shape), dtype=dtype, device=device)
    r = torch.func.functional_call(model, state, (x,)).sum()
    grads = torch.autograd.grad(r, leaves)
    return {n: (g * w.detach()).abs() for n, g, w in zip(names, grads, leaves, strict=True)}


@criterion("synflow", options=SynflowOptions, needs_data=False)
def synflow(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    precision = ctx.options.precision
    if precision == "float64":
        return _scores(ctx, torch.float64)
    scores = _scores(ctx, torch.float32)
    finite = torch.stack([torch.isfinite(s).all() for s in scores.values()]).all()  # one sync
    if precision == "auto" and not bool(finite):
        scores = _scores(ctx, torch.float64)
    return scores
