"""The dataset registry (``DATASETS``) and the tensor bundle every built-in loader returns.

The loaders register themselves on import (``generated_data``, ``image_data``); importing
``pruning_core.workloads.data`` imports them all, so the registry is complete there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import TensorDataset

from ..base.registry import Registry
from .bundle import DataBundle

DatasetLoader = Callable[..., DataBundle]
DATASETS: Registry[DatasetLoader] = Registry("dataset")

def tensor_bundle(
    name: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: int,
) -> DataBundle:
    """Wrap tensors, enforcing the float32 inputs / int64 labels convention."""
    return DataBundle(
        train=TensorDataset(x_train.float(), y_train.long()),
        test=TensorDataset(x_test.float(), y_test.long()),
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        num_classes=int(num_classes),
        name=name,
    )
