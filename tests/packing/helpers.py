"""Tiny configs and the solo-vs-packed comparison the packing tests share."""

from __future__ import annotations

import os
from typing import Any

import torch

from pruning_core.config import TrialConfig
from pruning_core.packing import run_pack
from pruning_core.trials.experiment import EpochReport, TrialResult, run

# Why not bitwise: under vmap a convolution with K members' weights runs as one grouped
# convolution and a linear layer as a batched matmul; their kernels sum the same products in
# another order (other blocking), so gradients differ in the last bits of float32, and the
# difference grows a little each step. Elementwise steps (masks, optimiser) add nothing: the
# masks are the same and pruned weights are exactly 0 in both.
WEIGHT_ATOL = 1e-4  # a few epochs of tiny data keep weights within ~1e-5 (measured)
LOSS_RTOL = 1e-4
# The device of every config below: cpu in CI; ``PRUNETUNE_TEST_DEVICE=cuda`` runs the same
# exactness checks on a GPU (benchmarks/gpu.sh's `exactness` step).
DEVICE = os.environ.get("PRUNETUNE_TEST_DEVICE", "cpu")


def config(**over: Any) -> TrialConfig:
    """A one-second cnn1d trial on 128 MNIST-1D examples; ``over``: dotted overrides."""
    d: dict[str, Any] = {
        "seed": 0,
        "model": {"name": "cnn1d"},
        "data": {"name": "mnist1d", "batch_size": 32, "train_limit": 128, "test_limit": 100},
        "train": {"epochs": 2, "optimizer": "adam", "lr": 0.01, "device": DEVICE},
        "prune": {"criterion": "snip", "sparsity": 0.8},
    }
    for dotted, value in over.items():
        *path, last = dotted.split("__")
        node = d
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return TrialConfig.model_validate(d)


def solo(cfg: TrialConfig) -> tuple[TrialResult, dict[str, Any] | None]:
    """``experiment.run`` and the checkpoint of its last epoch (final weights and masks)."""
    last: list[dict[str, Any]] = []
    result = run(cfg, on_epoch=lambda r: last.append(r.checkpoint()) or None)
    return result, last[-1] if last else None


def packed(cfgs: list[TrialConfig], **kw: Any) -> tuple[list[TrialResult],
                                                        list[dict[str, Any] | None]]:
    """``run_pack`` batched, and each member's last checkpoint."""
    last: dict[int, dict[str, Any]] = {}

    def on_epoch(i: int, r: EpochReport) -> None:
        last[i] = r.checkpoint()

    results = run_pack(cfgs, on_epoch=on_epoch, batched=True, **kw)
    return results, [last.get(i) for i in range(len(cfgs))]


def assert_same(a: TrialResult, ca: dict[str, Any] | None, b: TrialResult,
                cb: dict[str, Any] | None, test_examples: int = 100) -> None:
    """A packed member ``b`` equals its solo run ``a``: masks identical, weights and metrics
    equal to float tolerance (accuracy to one test example)."""
    assert a.status == b.status
    assert a.layer_sparsity == b.layer_sparsity and a.sparsity == b.sparsity
    assert a.epochs == b.epochs and a.diverged_epoch == b.diverged_epoch
    assert abs(a.test_accuracy - b.test_accuracy) <= 1.0 / test_examples + 1e-12
    if a.status == "ok":
        assert b.test_loss == pytest_approx(a.test_loss)
        assert b.train_loss == pytest_approx(a.train_loss)
    for ha, hb in zip(a.history, b.history, strict=True):
        assert ha["epoch"] == hb["epoch"] and ha["sparsity"] == hb["sparsity"]
    if ca is None:
        assert cb is None
        return
    assert cb is not None and ca["done"] == cb["done"]
    for name, m in ca["masks"].items():
        assert torch.equal(m, cb["masks"][name]), name
    for name, w in ca["model"].items():
        v = cb["model"][name]
        if w.is_floating_point():
            assert torch.allclose(w, v, atol=WEIGHT_ATOL, rtol=0), (name, (w - v).abs().max())
            mask = ca["masks"].get(name)
            if mask is not None:  # pruned weights are exactly zero in both
                assert bool((v[~mask] == 0).all())
        else:  # BatchNorm's num_batches_tracked
            assert torch.equal(w, v), name


def pytest_approx(x: float) -> Any:
    import pytest

    return pytest.approx(x, rel=LOSS_RTOL, abs=1e-6)
