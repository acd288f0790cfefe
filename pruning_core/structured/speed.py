"""Measured speed: inference latency and training-step time, warm-up then the median of N.

Timings are wall-clock on the given device (CUDA is synchronised around every repeat). The
model is left as found: inference runs in eval mode under ``no_grad`` and modes are restored;
training steps run on a copy (plain SGD, cross-entropy on random labels), so weights, optimiser
state and BatchNorm statistics of the caller's model never change.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SpeedReport:
    latency_ms_batch1: float
    latency_ms_train_batch: float
    train_step_ms: float
    train_batch: int
    device: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], device: torch.device, warmup: int,
               repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def latency_ms(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1,
               device: str | torch.device = "cpu", warmup: int = 3, repeats: int = 10) -> float:
    """Median eval-mode forward time (ms) of one batch of ``batch_size`` random inputs.
    ``model`` must already be on ``device``."""
    device = torch.device(device)
    x = torch.randn(batch_size, *input_shape, device=device)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            return _median_ms(lambda: model(x), device, warmup, repeats)
    finally:
        for m, training in modes.items():
            m.training = training


def train_step_ms(model: nn.Module, input_shape: tuple[int, ...], batch_size: int,
                  device: str | torch.device = "cpu", warmup: int = 2,
                  repeats: int = 5) -> float:
    """Median time (ms) of one SGD training step (forward, backward, step) in train mode, on a
    copy of ``model`` (already on ``device``)."""
    device = torch.device(device)
    net = copy.deepcopy(model).train()
    x = torch.randn(batch_size, *input_shape, device=device)
    with torch.no_grad():
        classes = net(x[:1]).shape[-1]
    y = torch.randint(0, classes, (batch_size,), device=device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    return _median_ms(step, device, warmup, repeats)


def measure_speed(model: nn.Module, input_shape: tuple[int, ...], train_batch: int,
                  device: str | torch.device = "cpu", warmup: int = 3,
                  repeats: int = 10) -> SpeedReport:
    """Latency at batch 1 and at ``train_batch``, and the training-step time."""
    device = torch.device(device)
    return SpeedReport(
        latency_ms_batch1=latency_ms(model, input_shape, 1, device, warmup, repeats),
        latency_ms_train_batch=latency_ms(model, input_shape, train_batch, device, warmup,
                                          repeats),
        train_step_ms=train_step_ms(model, input_shape, train_batch, device,
                                    max(1, warmup - 1), max(1, repeats // 2)),
        train_batch=train_batch,
        device=str(device),
    )


@dataclass(frozen=True)
class PairedSpeed:
    """Two networks timed in alternation: ``ratio_*`` are medians of per-pair ratios
    (baseline / candidate), so a load spike on a shared machine hits both sides of a pair."""

    candidate: SpeedReport
    baseline: SpeedReport
    ratio_latency: float  # training-size batch
    ratio_train_step: float


def _paired_ms(fa: Callable[[], object], fb: Callable[[], object], device: torch.device,
               warmup: int, repeats: int) -> tuple[float, float, float]:
    """(median ms of a, median ms of b, median of b/a over pairs), a and b alternating."""
    for _ in range(warmup):
        fa(), fb()
    ta, tb = [], []
    for i in range(repeats):
        for fn, out in ((fa, ta), (fb, tb)) if i % 2 == 0 else ((fb, tb), (fa, ta)):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            out.append((time.perf_counter() - start) * 1e3)
    ratios = [b / a for a, b in zip(ta, tb, strict=True)]
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def fn() -> object:
        with torch.no_grad():
            return model(x)
    return fn


def _trainer(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    net = copy.deepcopy(model).train()
    with torch.no_grad():
        classes = net(x[:1]).shape[-1]
    y = torch.randint(0, classes, (x.shape[0],), device=x.device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return step


def compare_speed(candidate: nn.Module, baseline: nn.Module, input_shape: tuple[int, ...],
                  train_batch: int, device: str | torch.device = "cpu", warmup: int = 3,
                  repeats: int = 10) -> PairedSpeed:
    """Latency (batch 1 and ``train_batch``) and training-step time of both networks, measured
    in alternation on ``device`` (both already there); the callers' models are left as found
    (eval mode under ``no_grad`` for inference, copies for training)."""
    device = torch.device(device)
    modes = {m: m.training for net in (candidate, baseline) for m in net.modules()}
    candidate.eval(), baseline.eval()
    try:
        x1 = torch.randn(1, *input_shape, device=device)
        xb = torch.randn(train_batch, *input_shape, device=device)
        a1, b1, _ = _paired_ms(_forward(candidate, x1), _forward(baseline, x1), device,
                               warmup, repeats)
        ab, bb, r_lat = _paired_ms(_forward(candidate, xb), _forward(baseline, xb), device,
                                   warmup, repeats)
    finally:
        for m, training in modes.items():
            m.training = training
    at, bt, r_step = _paired_ms(_trainer(candidate, xb), _trainer(baseline, xb), device,
                                warmup, repeats)
    dev = str(device)
    return PairedSpeed(SpeedReport(a1, ab, at, train_batch, dev),
                       SpeedReport(b1, bb, bt, train_batch, dev), r_lat, r_step)
