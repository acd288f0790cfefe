"""SNIP (Lee et al. 2019): connection sensitivity |∂L/∂c ⊙ 1| = |g ⊙ θ| at mask c = 1.

Defaults follow the authors' code and Synaptic-Flow, which agree:

- **eval mode** (``mode: eval``): SNIP-it's ``models/criterions/SNIP.py``
  (``get_weight_saliencies`` calls ``self.model.eval()``) and Synaptic-Flow's ``prune.py``
  (``prune_loop(..., train_mode=False)``) score with BatchNorm on its running statistics.
  ``mode: train`` scores on batch statistics instead (collapses far more layers at high
  sparsity; kept as an option for comparison with this project's earlier behaviour).
- **accumulated gradient** (``estimator: accumulated``): both codes call ``backward()`` once per
  scoring batch into one ``.grad`` and take the absolute value at the end, i.e.
  |(Σ_b g_b) ⊙ θ|. ``estimator: per_batch`` sums |g_b ⊙ θ| over batches instead.

Normalisation (SNIP-it divides by the loss, Synaptic-Flow by the sum of scores) is one positive
factor for all layers and does not change the ranking of a step, so it is left out.
SNIP-it (Verdenius et al. 2020) is SNIP with the ``snip_it`` schedule: each step rescores the
masked network.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from .base import ScoreContext, criterion, forward


class SnipOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["eval", "train"] = "eval"
    estimator: Literal["accumulated", "per_batch"] = "accumulated"


@criterion("snip", options=SnipOptions)
def snip(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    ctx.model.train(ctx.options.mode == "train")
    names = list(ctx.params)
    weights = [ctx.params[n] for n in names]
    acc = [torch.zeros_like(w) for w in weights]
    per_batch = ctx.options.estimator == "per_batch"
    for x, y in ctx.batches:
        loss = ctx.loss_fn(forward(ctx.model, x), y)
        for a, g, w in zip(acc, torch.autograd.grad(loss, weights), weights, strict=True):
            a.add_((g * w.detach()).abs_() if per_batch else g)
    if per_batch:
        return dict(zip(names, acc, strict=True))
    return {n: (g * w.detach()).abs_() for n, g, w in zip(names, acc, weights, strict=True)}
