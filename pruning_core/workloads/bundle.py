"""``DataBundle``: what every dataset loader and data factory returns.

Its own module, below both ``data`` (the dataset registry) and ``factories`` (the user's data
factory, checked into a bundle), so neither imports the other for it.
``pruning_core.workloads.data``
re-exports it: ``from pruning_core.workloads.data import DataBundle`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset


@dataclass(frozen=True)
class DataBundle:
    """Train and test splits plus what a model builder needs to know about them."""

    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]  # one example, without the batch axis
    num_classes: int
    name: str
