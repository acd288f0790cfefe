"""Wanda (Sun et al. 2023): pruning by weights and activations, after training.

Score of weight W_ij = |W_ij| · ‖X_j‖₂, the norm of input feature j over every calibration
token (``prune.score_batches`` training batches, ``timing: after``). Based on locuslab/wanda
``lib/layerwrapper.py`` (``WrappedGPT.add_batch``: ``scaler_row`` accumulates ‖X_j‖² / nsamples)
and ``lib/prune.py`` (``prune_wanda``: ``W_metric = |W| * sqrt(scaler_row)``):

- the authors divide ‖X_j‖² by the number of examples; that factor is the same for every
  weight of a layer, so it changes no ranking within a layer and is left out;
- the comparison group is each output row (``compare: row``, the authors' default sort along
  ``dim=-1``); N:M (``prune.pattern``) keeps the N best of every M consecutive inputs, as their
  ``prune_n``/``prune_m`` loop does;
- ``sequential: true`` (default) follows ``prune_wanda``'s loop over decoder blocks, whose
  next block's inputs are recomputed through the pruned block: here each layer's activations
  are taken through the network whose earlier layers (module order) are already pruned, one
  layer at a time (the authors share one dense forward among the layers of a block).
  ``sequential: false`` scores every layer on the dense network in one pass;
- N:M: the authors' ``prune_n`` counts the weights *removed* per group of ``prune_m``; our
  ``pattern.n`` counts those *kept* (2:4 is the same either way).
Conv layers (Conv1d/Conv2d) are unfolded so a feature is (input channel, kernel offset): the
norm of what multiplies each weight (``criteria/calibration.py``; an extension: the authors'
image-classifier code prunes only Linear layers).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict

from .base import ScoreContext, criterion
from .calibration import Gram, layer_grams, sequential


class WandaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sequential: bool = True


def wanda_score(weight: torch.Tensor, sumsq: torch.Tensor) -> torch.Tensor:
    """|W| · ‖X_j‖₂, shaped like ``weight`` (``sumsq``: Σ x_j² per feature of weight.flatten(1))."""
    w = weight.detach()
    norm = sumsq.to(w.dtype).sqrt()
    return (w.reshape(w.shape[0], -1).abs() * norm).view_as(w)


def _scores(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    grams = layer_grams(ctx.model, list(ctx.params), ctx.batches, diag_only=True)
    return {n: wanda_score(p, grams[n].diag()) for n, p in ctx.params.items()}


def _rewrite(ctx: ScoreContext, keep: dict[str, int], select, pattern) -> dict[str, torch.Tensor]:
    if not ctx.options.sequential:
        scores = _scores(ctx)
        return {n: select(n, scores[n], keep[n]) for n in keep}

    def layer(name: str, gram: Gram) -> torch.Tensor:
        return select(name, wanda_score(ctx.params[name], gram.diag()), keep[name])

    return sequential(ctx.model, ctx.params, ctx.batches, layer, diag_only=True)


@criterion("wanda", options=WandaOptions, compare="row", rewrite=_rewrite)
def wanda(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    return _scores(ctx)
