"""The criterion contract.

A criterion is a function ``score(ctx) -> {parameter name: scores}`` with scores shaped like the
weight, **higher = keep**. It must leave the model exactly as found: weights, buffers (BatchNorm
running stats), ``requires_grad``, ``.grad`` and train/eval mode. Criteria therefore compute
gradients with ``torch.autograd.grad`` (never ``.backward()``) and run the model through
``torch.func.functional_call`` with cloned buffers.

One explicit exception: a *reconstructing* criterion (SparseGPT) also has a ``rewrite`` hook.
The engine calls it once per prune step, after the allocation, with the keep count of every
layer; it chooses the masks itself and writes the updated kept weights into the model (the
weight update is the method, not a side effect). Its score function still obeys the contract
(the scores feed the allocation). ``compare`` names the criterion's default comparison group
(``pruning_core/masking/compare.py``; Wanda's is ``row``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from ...base.registry import Registry

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class ScoreContext:
    """Everything a criterion may read."""

    model: nn.Module
    params: dict[str, nn.Parameter]  # prunable weights, by parameter name
    masks: dict[str, torch.Tensor]  # current bool masks (pruned weights are already zero)
    batches: list[Batch]  # training batches on the model's device (data-driven criteria)
    input_shape: tuple[int, ...]  # one example's shape, for data-free criteria
    loss_fn: LossFn
    generator: torch.Generator  # CPU generator, seeded per run
    options: Any = None  # the criterion's validated options model


@dataclass(frozen=True)
class Criterion:
    fn: Callable[[ScoreContext], dict[str, torch.Tensor]]
    options: type[BaseModel] = NoOptions
    #: reads training batches (False: data-free, e.g. SynFlow, magnitude, random)
    needs_data: bool = True
    #: scores may be negative (GraSP): rankings that square or take logs of scores refuse it
    signed: bool = False
    #: default comparison group (``prune.compare`` overrides it); None: the criterion's
    #: ``rewrite`` chooses its masks itself (SparseGPT) and ``prune.compare`` is refused
    compare: str | None = "layer"
    #: (ctx, keep counts, N:M pattern or None) -> new masks, kept weights updated in the model
    rewrite: Callable[..., dict[str, torch.Tensor]] | None = None

    def __call__(self, ctx: ScoreContext) -> dict[str, torch.Tensor]:
        with restored_mode(ctx.model):
            return self.fn(ctx)


CRITERIA: Registry[Criterion] = Registry("criterion")


def criterion(name: str, options: type[BaseModel] = NoOptions, needs_data: bool = True,
              signed: bool = False, compare: str | None = "layer",
              rewrite: Callable[..., dict[str, torch.Tensor]] | None = None):
    """Register a score function: ``@criterion("snip")``."""

    def deco(fn: Callable[[ScoreContext], dict[str, torch.Tensor]]):
        CRITERIA.add(name, Criterion(fn, options, needs_data, signed, compare, rewrite))
        return fn

    return deco


@contextmanager
def restored_mode(model: nn.Module) -> Iterator[None]:
    """Put every module's train/eval flag back as it was on exit."""
    modes = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def forward(model: nn.Module, x: torch.Tensor,
            overrides: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Run ``model`` without mutating it: buffers are cloned, parameters optionally replaced."""
    state = {n: b.clone() for n, b in model.named_buffers()}
    if overrides:
        state.update(overrides)
    return torch.func.functional_call(model, state, (x,))
