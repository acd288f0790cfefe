"""Batches of an in-memory dataset held on the training device, with no DataLoader workers.

Every built-in dataset is a ``TensorDataset`` that fits in memory (CIFAR-10 train is 0.6 GB in
float32), so the whole split lives on the device: an epoch is one ``randperm`` from a CPU
generator (the trial's data-order generator, saved in checkpoints), then ``index_select`` and
batched augmentation on the device. No per-example Python, no collation, no host-to-device copy
per step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Dataset, TensorDataset

Batch = tuple[torch.Tensor, torch.Tensor]
Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class DeviceLoader:
    """Iterate ``(x, y)`` batches of ``dataset`` on ``device``; shuffled by ``generator``."""

    def __init__(self, dataset: TensorDataset, batch_size: int, device: torch.device,
                 generator: torch.Generator | None = None, shuffle: bool = False,
                 augment: Augmentation | None = None) -> None:
        x, y = dataset.tensors
        self.x = x.to(device)
        self.y = y.to(device)
        self.batch_size = batch_size
        self.generator = generator
        self.shuffle = shuffle
        self.augment = augment

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.y)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            xb = self.x.index_select(0, idx)
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            yield xb, self.y.index_select(0, idx)


def on_device(dataset: Dataset) -> bool:
    """Whether ``dataset`` can be served by ``DeviceLoader`` (a tensor dataset of (x, y))."""
    return isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2
