"""The model registry (``MODELS``) and the argument checks its builders share.

Builders register themselves on import (``small_models``, ``cifar_models``,
``transformer_builders``); importing ``pruning_core.workloads.models`` imports them all, so the
registry is complete there.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..base.errors import ConfigError
from ..base.registry import Registry

ModelBuilder = Callable[..., nn.Module]
MODELS: Registry[ModelBuilder] = Registry("model")


def scaled_channels(channels: int, width: float) -> int:
    """Channel count times a width multiplier, never below one channel."""
    if width <= 0:
        raise ConfigError(f"model option width={width} must be > 0 (e.g. 0.25 for a tiny model)")
    return max(1, round(channels * width))


def image_chw(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) from ``input_shape``; 2-D models need a channel and two spatial dims."""
    if len(input_shape) != 3:
        raise ConfigError(f"model {name!r} needs input_shape (C, H, W); got {tuple(input_shape)}")
    c, h, w = (int(d) for d in input_shape)
    return c, h, w


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution along one dimension (PyTorch's floor formula)."""
    return (size + 2 * padding - kernel) // stride + 1
