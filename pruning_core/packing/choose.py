"""``budget.pack: auto``: batch a pack only where a batched step beats K separate steps.

On a GPU a small network's step is bound by kernel launches and Python, so K members in one
batched step cost little more than one. On a CPU core the step may already be compute-bound:
a vmapped MNIST-1D CNN step at batch 128 ran at 0.67x the speed of 32 separate steps (issue 20).
So :func:`choose_packed` times a few training steps both ways, on the pack's own network,
batch size and device, and picks the faster. Members that are not batched still share the
process (one data load, one actor), run one after another.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..config import TrialConfig
from ..trials.loop import make_optimizer
from ..trials.trial import resolve_device
from ..workloads.data import dataset_spec
from ..workloads.models import create_model
from .batched import StackedModels, train_step
from .compat import pack_key
from .optim import BatchedOptimizer


@dataclass(frozen=True)
class StepTiming:
    """Seconds per training step: one member alone, and all ``members`` batched."""

    members: int
    solo_s: float
    packed_s: float

    @property
    def speedup(self) -> float:
        """Trials per second packed over one at a time (> 1: packing is faster)."""
        return self.members * self.solo_s / self.packed_s if self.packed_s > 0 else 0.0


def decide(timing: StepTiming, min_speedup: float = 1.0) -> bool:
    """Pack when the batched step is faster than ``members`` solo steps by more than
    ``min_speedup`` (ties go to one at a time: packing must never lose)."""
    return timing.members > 1 and timing.speedup > min_speedup


def _synthetic(cfg: TrialConfig, device: torch.device) -> tuple[nn.Module, torch.Tensor,
                                                                   torch.Tensor]:
    shape, classes = dataset_spec(cfg.data.name, root=cfg.data.root, seed=cfg.seed,
                                  **cfg.data.options)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model.name, shape, classes, **cfg.model.options).to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.data.batch_size, *shape, generator=gen).to(device)
    y = torch.randint(0, classes, (cfg.data.batch_size,), generator=gen).to(device)
    return model, x, y


def _median_time(step: Callable[[], None], device: torch.device, steps: int,
                 warmup: int) -> float:
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_steps(cfgs: Sequence[TrialConfig], steps: int = 3, warmup: int = 1) -> StepTiming:
    """Time a training step of the pack's network on synthetic batches of its shapes: one
    member alone (its own optimiser), then all members as one batched step."""
    device = resolve_device(cfgs[0].train.device)
    built = [_synthetic(c, device) for c in cfgs]
    model, x, y = built[0]
    opt = make_optimizer(model, cfgs[0].train)

    def solo() -> None:
        model.train()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    stack = StackedModels([m for m, _, _ in built])
    bopt = BatchedOptimizer(cfgs[0].train.optimizer,
                            [make_optimizer(m, c.train) for (m, _, _), c in zip(built, cfgs,
                                                                                strict=True)],
                            stack.names)
    bopt.load(stack.params)
    xs = torch.stack([b[1] for b in built])
    ys = torch.stack([b[2] for b in built])

    stack.base.train()

    def packed() -> None:
        train_step(stack, bopt, {}, xs, ys, cfgs[0].train.amp)

    solo_s = _median_time(solo, device, steps, warmup)
    packed_s = _median_time(packed, device, steps, warmup)
    return StepTiming(len(cfgs), solo_s, packed_s)


#: ``choose_packed`` packs only above this step speed-up: a step timed on a loaded machine
#: varies by +-20% (cnn1d, K = 32 on the shared 2-core CPU: a step 1.04x faster packed came
#: with whole trials 0.74x as fast), and packing must never lose
MIN_STEP_SPEEDUP = 1.25


#: this process's answers of ``choose_packed`` with ``measure_steps``: (pack key, members,
#: threads) -> batched. A sweep's actor runs many packs of one key; they share one timing.
_CHOSEN: dict[tuple[str | None, int, int], bool] = {}


def choose_packed(cfgs: Sequence[TrialConfig],
                  measure: Callable[[Sequence[TrialConfig]], StepTiming] = measure_steps,
                  min_speedup: float = MIN_STEP_SPEEDUP) -> bool:
    """Whether to train this pack batched (True) or its members one at a time (False).

    With the default ``measure``, the answer for a pack key and size is measured once per
    process (the step's shapes, device and loop are what the key fixes)."""
    if len(cfgs) < 2:
        return False
    if measure is not measure_steps:
        return decide(measure(cfgs), min_speedup)
    key = (pack_key(cfgs[0]), len(cfgs), torch.get_num_threads())
    if key not in _CHOSEN:
        _CHOSEN[key] = decide(measure(cfgs), min_speedup)
    return _CHOSEN[key]
