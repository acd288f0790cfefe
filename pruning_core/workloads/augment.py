"""Batched data augmentation on the device: the CIFAR recipe of every pruning paper.

Random crop with zero padding then a horizontal flip with probability 1/2, applied per example
to a whole batch at once (index arithmetic, no Python loop over examples), on whatever device the
batch is on. The random draws come from a CPU ``torch.Generator`` the caller owns (the loader's),
so an augmented epoch is the same on CPU and GPU and a resumed run draws the same crops.

Reference recipe: ``transforms.RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` before
``ToTensor``/``Normalize`` (Synaptic-Flow ``Utils/load.py``, open_lth
``datasets/cifar10.py``). Their padding is black pixels *before* normalisation; on normalised
inputs that is ``-mean / std`` per channel, which ``fill`` carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..base.registry import Registry


@dataclass(frozen=True)
class CropFlip:
    """Random crop of the input's own size from a ``padding``-padded copy, then random h-flip."""

    padding: int = 4
    flip: bool = True
    #: per-channel padding value (the normalised black level); None pads with 0
    fill: tuple[float, ...] | None = None

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        # x: (B, C, H, W)
        b, c, h, w = x.shape
        p = self.padding
        offsets = torch.randint(0, 2 * p + 1, (2, b), generator=generator)
        flips = torch.rand(b, generator=generator) < 0.5
        if p > 0:
            padded = x.new_empty(b, c, h + 2 * p, w + 2 * p)
            fill = torch.zeros(c) if self.fill is None else torch.tensor(self.fill)
            padded[:] = fill.to(x).view(1, c, 1, 1)
            padded[:, :, p:p + h, p:p + w] = x
            dev = x.device
            rows = offsets[0].to(dev)[:, None] + torch.arange(h, device=dev)  # (B, H)
            cols = offsets[1].to(dev)[:, None] + torch.arange(w, device=dev)  # (B, W)
            batch = torch.arange(b, device=dev)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B,H,W,C)
            x = x.permute(0, 3, 1, 2)
        if self.flip:
            x = torch.where(flips.to(x.device).view(b, 1, 1, 1), x.flip(-1), x)
        return x.contiguous()


Augment = CropFlip | None
AUGMENTATIONS: Registry[type[CropFlip]] = Registry("augmentation")
AUGMENTATIONS.add("crop_flip", CropFlip)


def black_level(mean: Sequence[float], std: Sequence[float]) -> tuple[float, ...]:
    """The normalised value of a zero pixel, per channel: what torchvision's padding becomes."""
    return tuple(-m / s for m, s in zip(mean, std, strict=True))
