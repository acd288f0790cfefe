"""What one trial gives back: :class:`TrialResult` at the end, :class:`EpochReport` after every
training epoch (with the state a resume starts from)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrialResult:
    status: str  # "ok" | "diverged"
    test_accuracy: float
    test_loss: float
    train_accuracy: float
    train_loss: float
    sparsity: float
    target_sparsity: float
    layer_sparsity: dict[str, float]
    collapsed_layers: list[str]
    params: int
    params_kept: int
    flops_dense: int
    flops: int
    prune_time_s: float
    train_time_s: float
    epochs: int
    #: classes of the dataset (a language model: its vocabulary); the chance line is 1/K
    num_classes: int | None = None
    diverged_epoch: int | None = None
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    #: metrics.similarity: {layer: similarity to the dense reference}, and their finite mean
    similarity: dict[str, float] = field(default_factory=dict)
    similarity_mean: float | None = None
    #: layers left out of pruning because their weights were all zero when scored
    #: (``prune.prune_zero_layers: false``)
    excluded_layers: list[str] = field(default_factory=list)
    #: prune.granularity channel: the fraction of channels removed (``sparsity`` is weights)
    node_sparsity: float | None = None
    #: cumulative training FLOPs over the run (3 x forward per example seen; masked layers
    #: count their density, a compact model its real size)
    train_flops: int = 0
    #: metrics.speed: measured on the trial's device, final network and dense network
    latency_ms: float | None = None  # inference, one training-size batch
    latency_ms_batch1: float | None = None
    train_step_ms: float | None = None
    latency_ms_dense: float | None = None
    latency_ms_batch1_dense: float | None = None
    train_step_ms_dense: float | None = None
    #: median over alternating (dense, final) pairs of dense / final time (training step)
    speedup: float | None = None
    inference_speedup: float | None = None  # the same for inference (training-size batch)
    #: metrics.speed with prune.pattern 2:4: semi-structured against dense fp16 inference
    nm_latency_ms: float | None = None
    nm_latency_ms_dense: float | None = None
    nm_speedup: float | None = None  # None off CUDA: no semi-structured kernel, never assumed
    nm_speedup_note: str | None = None
    #: generalisation gap at the end: train - test accuracy, test - train loss
    gap_accuracy: float | None = None
    gap_loss: float | None = None
    #: pruning_core/effective.py: kept weights on some input -> output path, and the rest
    effective_sparsity: float | None = None
    disconnected_weights: int | None = None
    dead_units: int | None = None
    effective_params: int | None = None
    effective_flops: int | None = None
    layer_effective_sparsity: dict[str, float] = field(default_factory=dict)
    #: metrics.adversarial: accuracy under attack on the seeded test subset, and its settings
    adv_accuracy: float | None = None
    adversarial: dict[str, Any] = field(default_factory=dict)
    #: exp(test_loss): per-token perplexity for a language model (its loss is the mean token
    #: cross-entropy); for a classifier the same formula, exp(mean cross-entropy per example)
    perplexity: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self) -> dict[str, float | int | str]:
        """Scalar metrics only (what a sweep reports and optimises)."""
        return {k: v for k, v in self.to_dict().items()
                if isinstance(v, int | float | str) and not isinstance(v, bool)}


@dataclass
class EpochReport:
    epoch: int  # 1-based, counted over all training phases
    total_epochs: int  # training epochs in the whole plan (the last report has epoch == this)
    metrics: dict[str, float]
    _state: Callable[[], dict[str, Any]]
    #: the network's size as it trains now (``Trial.size_metrics``): what a trial stopped
    #: before its end keeps (FLOPs, parameters, target sparsity); not part of ``history``
    sizes: dict[str, float] = field(default_factory=dict)

    def checkpoint(self) -> dict[str, Any]:
        """State to pass back as ``run(cfg, resume=...)``; ``torch.save``-able, weights_only."""
        return self._state()

