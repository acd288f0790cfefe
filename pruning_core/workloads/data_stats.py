"""Normalisation statistics of the built-in image datasets, and what they imply.

Per-channel mean / std of the training images (CIFAR, MNIST-style, ImageNet), the
standardisation applied when a dataset is read, and the normalised value of a black pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

CIFAR_STATS = {  # per-channel mean / std of the training images
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
MNIST_STATS = {"mnist": (0.1307, 0.3081), "fashion_mnist": (0.2860, 0.3530)}
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(N, C, H, W) uint8 -> float32 in [0, 1], then per-channel standardisation."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s


def black_pixel(name: str, **options: Any) -> tuple[float, ...] | None:
    """The normalised value of a black pixel per channel (what torchvision's RandomCrop pads
    with before normalising), or None where inputs are not normalised images."""
    if not options.get("normalize", True):
        return None
    if name in CIFAR_STATS:
        mean, std = CIFAR_STATS[name]
        return tuple(-m / s for m, s in zip(mean, std, strict=True))
    if name in MNIST_STATS:
        mean, std = MNIST_STATS[name]
        return (-mean / std,)
    return None
