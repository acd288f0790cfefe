"""Data-free baselines: magnitude and random."""

from __future__ import annotations

import torch

from .base import ScoreContext, criterion


@criterion("magnitude", needs_data=False)
def magnitude(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """|θ|."""
    return {n: p.detach().abs() for n, p in ctx.params.items()}


@criterion("random", needs_data=False)
def random(ctx: ScoreContext) -> dict[str, torch.Tensor]:
    """I.i.d. uniform scores from the run's seeded generator (same draw on CPU and GPU)."""
    return {
        n: torch.rand(p.shape, generator=ctx.generator).to(p.device)
        for n, p in ctx.params.items()
    }
