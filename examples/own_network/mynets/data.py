"""The user's data, as prunetune calls a data factory: ``load(seed=..., root=..., **options)``
returning train/test datasets, the input shape and the number of classes.

Here: scikit-learn's bundled handwritten digits as 1×8×8 images (no download), split by seed.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset


def load(seed: int = 0, root: str | None = None, test_fraction: float = 0.2) -> dict:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x = torch.tensor(x[order] / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(y[order], dtype=torch.int64)
    n_test = int(len(y) * test_fraction)
    return {
        "train": TensorDataset(x[n_test:], y[n_test:]),
        "test": TensorDataset(x[:n_test], y[:n_test]),
        "input_shape": (1, 8, 8),
        "num_classes": 10,
    }
