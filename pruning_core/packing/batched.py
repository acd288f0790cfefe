"""One training epoch of K members as one batched model.

The members' parameters and buffers (BatchNorm running statistics included) are stacked with a
leading member dimension (as ``torch.func.stack_module_state``) and the network runs under
``vmap(functional_call)``: each member sees its own batch, from its own loader (its own seed,
so its own data order), and its own weights. The loss is the sum of the members' mean losses,
so one backward pass gives every member the gradient of its own loss. The step is
:class:`BatchedOptimizer`; each member's masks are enforced after it, as ``train_epoch`` does.
After the epoch the stacked tensors are copied back into each member's own model and optimiser,
so evaluation, metrics, checkpoints and results run the solo code unchanged.

Follows the model-ensembling recipe of PyTorch's ``torch.func`` tutorial
(pytorch/tutorials ``intermediate_source/ensembling.py``); under ``vmap`` a convolution with
batched weights runs as one grouped convolution, which is HFTA's fusion
(UofT-EcoSystem/hfta, MLSys 2021).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from ..masking.masks import MaskSet
from ..trials.loop import EpochStats
from ..workloads.loader import DeviceLoader
from .optim import BatchedOptimizer


class StackedModels:
    """The stacked parameters and buffers of K members' models (same architecture)."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.models = list(models)
        self.base = copy.deepcopy(self.models[0]).to("meta")  # the code; its tensors are ours
        # stack_module_state's stacking, without its check that the members are in one mode
        # (a member just evaluated is in eval mode; the batched epoch trains them all)
        per_member = [dict(m.named_parameters()) for m in self.models]
        per_buffer = [dict(m.named_buffers()) for m in self.models]
        self.params = {n: torch.stack([p[n].detach() for p in per_member]).requires_grad_(True)
                       for n in per_member[0]}
        self.buffers = {n: torch.stack([b[n].detach() for b in per_buffer])
                        for n in per_buffer[0]}
        self.names = list(self.params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(K, B, ...)`` -> ``(K, B, classes)``."""

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                xb: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (p, b), (xb,))

        return vmap(one, in_dims=(0, 0, 0), randomness="error")(self.params, self.buffers, x)

    @torch.no_grad()
    def write_back(self, members: Sequence[int] | None = None) -> None:
        """Copy member k's slice into its own model (those in ``members``; all by default)."""
        for k, model in enumerate(self.models):
            if members is not None and k not in members:
                continue
            for n, p in model.named_parameters():
                p.copy_(self.params[n][k])
            for n, b in model.named_buffers():
                b.copy_(self.buffers[n][k])


def stacked_masks(masks: Sequence[MaskSet], stack: StackedModels) -> dict[str, torch.Tensor]:
    """``{parameter: (K, ...) float mask}`` for every parameter some member masks (ones where a
    member does not: multiplying by one changes nothing)."""
    out: dict[str, torch.Tensor] = {}
    names = {n for m in masks for n in m.masks}
    for name in stack.names:
        if name not in names:
            continue
        p = stack.params[name]
        out[name] = torch.stack([
            m.masks[name].to(p.dtype) if name in m.masks else torch.ones_like(p[k])
            for k, m in enumerate(masks)])
    return out


def packed_batches(loaders: Sequence[Any],
                   device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The members' batches stacked, ``(K, B, ...)`` and ``(K, B)``, each member's as its own
    loader gives it. Device loaders over one shared split without augmentation (the usual
    pack: ``share_data``) are gathered with one index per step, drawing each member's order
    exactly as ``DeviceLoader.__iter__`` does (one ``randperm`` from its generator)."""
    first = loaders[0]
    fused = all(isinstance(ld, DeviceLoader) and ld.x is first.x and ld.y is first.y
                and ld.shuffle and ld.augment is None and ld.batch_size == first.batch_size
                for ld in loaders)
    if not fused:
        for batches in zip(*(iter(ld) for ld in loaders), strict=True):
            yield (torch.stack([xb.to(device, non_blocking=True) for xb, _ in batches]),
                   torch.stack([yb.to(device, non_blocking=True) for _, yb in batches]))
        return
    n = len(first.y)
    orders = torch.stack([torch.randperm(n, generator=ld.generator) for ld in loaders])
    orders = orders.to(first.x.device)  # (K, N)
    for start in range(0, n, first.batch_size):
        idx = orders[:, start:start + first.batch_size]  # (K, B)
        yield first.x[idx].to(device), first.y[idx].to(device)


def train_step(stack: StackedModels, optimizer: BatchedOptimizer, masks: dict[str, torch.Tensor],
               x: torch.Tensor, y: torch.Tensor, amp: str = "none") -> tuple[torch.Tensor,
                                                                              torch.Tensor]:
    """One step of every member on its batch ``x`` ``(K, B, ...)``, ``y`` ``(K, B)``:
    the members' mean losses ``(K,)`` and outputs ``(K, B, classes[, T])``."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
        out = stack.forward(x)  # (K, B, classes) or (K, B, vocab, T)
        # each member's cross_entropy(out, y), as train_epoch: the mean per example (token)
        loss = vmap(nn.functional.cross_entropy)(out.float(), y)  # (K,)
    # the members' losses are independent: d(sum)/d(params_k) is member k's own gradient
    grads = torch.autograd.grad(loss.sum(), [stack.params[n] for n in stack.names])
    optimizer.step(stack.params, dict(zip(stack.names, grads, strict=True)))
    with torch.no_grad():
        for name, m in masks.items():  # pruned weights back to exactly zero
            stack.params[name].mul_(m)
    return loss.detach(), out.detach()


def train_packed_epoch(stack: StackedModels, loaders: Sequence[Any],
                       optimizer: BatchedOptimizer, masks: dict[str, torch.Tensor],
                       device: torch.device, amp: str = "none") -> list[EpochStats]:
    """One epoch for every member; the members' loaders must yield equally shaped batches
    (the same dataset size and batch size). Mirrors ``training.train_epoch``: the caller
    tells a non-finite mean loss (diverged) from the rest."""
    stack.base.train()
    k = len(stack.models)
    loss_sum = torch.zeros(k, device=device)
    correct = torch.zeros(k, device=device, dtype=torch.long)
    total = 0
    for x, y in packed_batches(loaders, device):
        loss, out = train_step(stack, optimizer, masks, x, y, amp)
        per_member = y[0].numel()  # examples (tokens) in a member's batch
        loss_sum += loss * per_member
        correct += (out.argmax(2) == y).flatten(1).sum(1)
        total += per_member
    means = (loss_sum / max(total, 1)).tolist()
    accs = (correct.double() / max(total, 1)).tolist()
    return [EpochStats(mean, acc) for mean, acc in zip(means, accs, strict=True)]
