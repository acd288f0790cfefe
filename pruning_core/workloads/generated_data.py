"""Generated or bundled datasets: ``digits``, ``mnist1d``, ``synthetic`` (no download, no root)."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence

import numpy as np
import torch

from ..base.errors import ConfigError
from .bundle import DataBundle
from .data_registry import DATASETS, tensor_bundle


@DATASETS.register("digits")
def load_digits(root: str | None = None, seed: int = 0, test_size: int = 360) -> DataBundle:
    """scikit-learn's bundled 8x8 digits (1,797 images) as (1, 8, 8) in [0, 1].

    The split comes from a permutation drawn from a local generator seeded by ``seed``, so it
    is reproducible and leaves numpy's global state alone; 360 test images by default.
    """
    from sklearn.datasets import load_digits as sk_load_digits  # deferred: sklearn is slow

    digits = sk_load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(digits.target.astype(np.int64))  # (N,)
    if not 0 < test_size < len(y):
        raise ConfigError(f"digits: test_size={test_size} must be in 1..{len(y) - 1}")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    test_idx, train_idx = perm[:test_size], perm[test_size:]
    return tensor_bundle("digits", x[train_idx], y[train_idx], x[test_idx], y[test_idx], 10)


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Generate the canonical MNIST-1D split once per process (~1.5 s)."""
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds numpy's and Python's *global* generators; put them back afterwards
    # so loading data never changes the randomness of the caller.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    arrays = (d["x"], d["y"], d["x_test"], d["y_test"])
    for a in arrays:
        a.flags.writeable = False  # cached: callers must get copies, never mutate these
    return arrays


@DATASETS.register("mnist1d")
def load_mnist1d(root: str | None = None, seed: int = 0) -> DataBundle:
    """MNIST-1D (Greydanus 2020): 4,000 train / 1,000 test sequences as (1, 40).

    Always the canonical dataset (generator seed 42, already shuffled), so results compare
    with the published baselines; ``seed`` does not change it.
    """
    x, y, x_test, y_test = (torch.tensor(a) for a in _mnist1d_arrays())  # copies
    x, x_test = x.unsqueeze(1), x_test.unsqueeze(1)  # (N, 1, 40)
    return tensor_bundle("mnist1d", x, y, x_test, y_test, 10)


SYNTHETIC_LATENT_DIM = 16  # inputs lie near a 16-dim subspace: learnable from ~1k examples
SYNTHETIC_NOISE = 0.5  # isotropic noise around that subspace, relative to unit signal


@DATASETS.register("synthetic")
def load_synthetic(
    root: str | None = None,
    seed: int = 0,
    num_train: int = 1024,
    num_test: int = 256,
    shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
) -> DataBundle:
    """Gaussian inputs labelled by a fixed random linear teacher (benchmarks and tests only).

    A teacher on raw 3,072-dim noise cannot be learned from 1,024 examples, so the inputs are
    Gaussian latents ``z`` (16 dims) mapped through a fixed random matrix, plus Gaussian noise;
    labels are ``argmax(z @ T)``. Everything comes from a local generator seeded by ``seed``.
    """
    shape = tuple(int(d) for d in shape)
    if num_train < 1 or num_test < 1 or num_classes < 2 or not shape or min(shape) < 1:
        raise ConfigError(
            "synthetic: need num_train >= 1, num_test >= 1, num_classes >= 2 and a shape of "
            f"positive sizes; got {num_train}, {num_test}, {num_classes}, {shape}"
        )
    gen = torch.Generator().manual_seed(seed)
    n, k = num_train + num_test, SYNTHETIC_LATENT_DIM
    z = torch.randn(n, k, generator=gen)  # (N, k)
    mixing = torch.randn(k, math.prod(shape), generator=gen) / k**0.5  # (k, D): unit variance
    noise = SYNTHETIC_NOISE * torch.randn(n, math.prod(shape), generator=gen)  # (N, D)
    x = (z @ mixing + noise).view(n, *shape)  # (N, *shape)
    teacher = torch.randn(k, num_classes, generator=gen)  # (k, K)
    y = (z @ teacher).argmax(dim=1)  # (N,)
    return tensor_bundle(
        "synthetic", x[:num_train], y[:num_train], x[num_train:], y[num_train:], num_classes
    )

