"""GraSP (Wang et al. 2020): gradient-signal preservation via the Hessian-gradient product.

Follows the official code, alecwangcq/GraSP ``pruner/GraSP.py`` (``GraSP``):

- logits are divided by a temperature T = 200;
- g = Σ_b ∇L_b (no graph), then Hg = ∂(gᵀ ∇L)/∂θ by double backward, batch by batch;
- the official code scores ``-θ ⊙ Hg`` and removes the *highest*; in our convention (higher =
  keep) the keep score is therefore ``+θ ⊙ Hg`` (checked on a hand-computed case in the tests);
- ``reinit_linear: true`` (the official ``reinit=True``): every ``nn.Linear`` weight is replaced
  by a fresh Xavier-normal draw *for scoring only* (the official code does it on a deep copy and
  scores with the re-drawn weights); the model is never changed. Already-pruned weights stay 0.
- ``mode: train`` (default): the official code keeps the mode the network comes in with
  (``copy.deepcopy(net)  # .eval()`` is commented out), i.e. train mode at initialisation.
  ``mode: eval`` is Synaptic-Flow's choice (``Pruners/pruners.py`` with ``train_mode=False``).
  The official code also draws a class-balanced scoring set (``samples_per_class``); here the
  scoring batches are ``prune.score_batches`` shuffled training batches, as for SNIP, unless
  ``prune.score_samples_per_class`` asks for the official set.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from .base import ScoreContext, criterion, forward


class GraspOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float = Field(200.0, gt=0)
    mode: Literal["train", "eval"] = "train"
    reinit_linear: bool = True


def xavier_normal(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Glorot & Bengio (2010) normal init, gain 1: std = sqrt(2 / (fan_in + fan_out))."""
    fan_out, fan_in = shape[0], math.prod(shape[1:])
    return torch.randn(shape, generator=generator) * math.sqrt(2.0 / (fan_in + fan_out))


def _scoring_weights(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """Parameter overrides for scoring: Linear weights re-drawn (and masked) if asked."""
    if not ctx.options.reinit_linear:
        return {}
    out = {}
    for mod_name, m in ctx.model.named_modules():
        if isinstance(m, nn.Linear):
            name = f"{mod_name}.weight" if mod_name else "weight"
            w = xavier_normal(m.weight.shape, ctx.generator).to(m.weight)
            mask = ctx.masks.get(name)
            out[name] = w * mask if mask is not None else w
    return out


@criterion("grasp", options=GraspOptions, signed=True)
def grasp(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    ctx.model.train(ctx.options.mode == "train")
    t = ctx.options.temperature
    names = list(ctx.params)
    overrides = _scoring_weights(ctx)
    weights = [overrides[n].requires_grad_() if n in overrides else ctx.params[n] for n in names]
    others = {n: w for n, w in overrides.items() if n not in ctx.params}

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        state = {**others, **dict(zip(names, weights, strict=True))}
        return ctx.loss_fn(forward(ctx.model, x, state) / t, y)

    # g: the gradient over all scoring batches (a constant in the second pass)
    g = [torch.zeros_like(w) for w in weights]
    for x, y in ctx.batches:
        for acc, gi in zip(g, torch.autograd.grad(loss(x, y), weights), strict=True):
            acc.add_(gi)
    # Hg = ∂(gᵀ ∇L)/∂θ by double backward, batch by batch
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in ctx.batches:
        grads = torch.autograd.grad(loss(x, y), weights, create_graph=True)
        z = sum((gi * c).sum() for gi, c in zip(grads, g, strict=True))
        for acc, h in zip(hg, torch.autograd.grad(z, weights), strict=True):
            acc.add_(h)
    return {n: w.detach() * h for n, w, h in zip(names, weights, hg, strict=True)}
