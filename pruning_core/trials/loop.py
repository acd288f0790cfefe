"""Train and evaluate with masks enforced after every optimiser step."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import TrainConfig
from ..masking.masks import MaskSet


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochStats:
    loss: float
    accuracy: float


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_at(cfg: TrainConfig, epoch: int, epochs: int) -> float:
    """Learning rate for ``epoch`` (0-based) of a training phase of ``epochs`` epochs.

    ``warmup_epochs`` = w scales the first w epochs of a phase by (e + 1) / w (linear warm-up,
    Goyal et al. 2017, per epoch); the schedule itself runs over the whole phase."""
    if cfg.lr_schedule == "cosine" and epochs > 0:
        lr = 0.5 * cfg.lr * (1.0 + math.cos(math.pi * epoch / epochs))
    elif cfg.lr_schedule == "step":  # x lr_gamma at each milestone (default /10 at 50%, 75%)
        lr = cfg.lr * cfg.lr_gamma ** sum(epoch >= f * epochs for f in cfg.lr_milestones)
    else:
        lr = cfg.lr
    if epoch < cfg.warmup_epochs:
        lr *= (epoch + 1) / cfg.warmup_epochs
    return lr


def train_epoch(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
                optimizer: torch.optim.Optimizer, masks: MaskSet, device: torch.device,
                loss_fn=nn.functional.cross_entropy, amp: str = "none",
                channels_last: bool = False) -> EpochStats:
    """One epoch. ``amp: bf16`` autocasts the forward pass (the float32 weights, their masks and
    the optimiser are untouched, so pruned weights stay exactly 0); ``channels_last`` converts
    4-D inputs. ``model`` may be a ``torch.compile``d module sharing the masked parameters."""
    model.train()
    # accumulate on the device: no host sync per step
    total, correct, loss_sum = 0, torch.zeros((), device=device), torch.zeros((), device=device)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            out = model(x)  # (B, classes)
            loss = loss_fn(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        masks.apply()  # pruned weights back to exactly zero (momentum, weight decay)
        loss_sum += loss.detach() * y.numel()
        correct += (out.argmax(1) == y).sum()
        total += y.numel()
    mean = float(loss_sum) / max(total, 1)
    if not math.isfinite(mean):
        raise Diverged(f"training loss is {mean}")
    return EpochStats(mean, float(correct) / max(total, 1))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
             loss_fn=nn.functional.cross_entropy) -> EpochStats:
    model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model(x)
        loss_sum += float(loss_fn(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        total += y.numel()
    return EpochStats(loss_sum / max(total, 1), correct / max(total, 1))
