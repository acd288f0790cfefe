"""A small CNN for 8×8 grey images, built the way prunetune calls a model factory:
``build(input_shape, num_classes, **options) -> nn.Module``."""

from __future__ import annotations

from torch import nn


def build(input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> nn.Module:
    channels, height, width_px = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * (height // 2) * (width_px // 2), 64), nn.ReLU(),
        nn.Linear(64, num_classes),
    )
