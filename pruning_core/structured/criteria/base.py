"""The structured criterion contract.

A structured criterion is ``score(ctx) -> {group id: (size,) channel scores}``, **higher =
keep**, and leaves the model exactly as found (weights, buffers, ``requires_grad``, ``.grad``,
train/eval mode, no hooks left behind), like the weight criteria of
``pruning_core.masking.criteria``.

Reduction over a group: a channel's score is the **sum over the group's members** of the
member's score for that channel (a residual group of three convs adds three per-conv scores;
a channel that owns ``H * W`` input columns of a Linear adds all of them). Each criterion's
docstring says which members and which weights it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from ...base.registry import Registry
from ...masking.criteria.base import Batch, LossFn, NoOptions, restored_mode
from ..graph import ChannelGroup, Member
from ..select import Keep


@dataclass
class StructuredContext:
    """Everything a structured criterion may read. Removed channels are already zeroed in the
    model's weights (as the engine keeps them), and ``keep`` says which."""

    model: nn.Module
    groups: list[ChannelGroup]
    keep: Keep
    batches: list[Batch]  # scoring batches on the model's device (data-driven criteria)
    input_shape: tuple[int, ...]  # one example's shape, for data-free criteria
    loss_fn: LossFn
    generator: torch.Generator  # CPU generator, seeded per run
    options: Any = None


ScoreFn = Callable[[StructuredContext], dict[int, torch.Tensor]]


@dataclass(frozen=True)
class StructuredCriterion:
    fn: ScoreFn
    options: type[BaseModel] = NoOptions
    needs_data: bool = True
    signed: bool = False
    #: the channel scores are ranked together with this weight criterion's scores (CNIP)
    joint_weights: str | None = None

    def __call__(self, ctx: StructuredContext) -> dict[int, torch.Tensor]:
        with restored_mode(ctx.model):
            return self.fn(ctx)


STRUCTURED_CRITERIA: Registry[StructuredCriterion] = Registry("structured criterion")


def structured_criterion(name: str, options: type[BaseModel] = NoOptions,
                         needs_data: bool = True, signed: bool = False,
                         joint_weights: str | None = None):
    """Register a channel score function: ``@structured_criterion("snap")``."""

    def deco(fn: ScoreFn) -> ScoreFn:
        STRUCTURED_CRITERIA.add(name, StructuredCriterion(fn, options, needs_data, signed,
                                                          joint_weights))
        return fn

    return deco


def to_channels(group: ChannelGroup, member: Member, per_position: torch.Tensor) -> torch.Tensor:
    """(size,) channel sums of a member's per-position scores (indexed by ``member.index``)."""
    vals = per_position[member.index.to(per_position.device)]
    out = torch.zeros(group.size, dtype=vals.dtype, device=vals.device)
    return out.index_add_(0, member.channel.to(vals.device), vals)
