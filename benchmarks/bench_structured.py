"""Structured pruning benchmark: is a compacted network as fast as a hand-narrowed one?

a. ResNet-18, CIFAR form (32², 10 classes): dense vs our compacted model at 50 % of the
   channels vs the hand-narrowed width-0.5 ResNet-18 (``create_model("resnet18", width=0.5)``).
   Two compacted variants: ``compact-uniform`` keeps the L1-best half of every channel group
   (exactly the narrow net's shapes: it isolates what compaction itself costs), ``compact-snap``
   keeps SNAP's global top 50 % of channels (what a user gets; scored on random batches at
   initialisation, so the widths are SNAP's choice, not a halving).
b. The same at 224² in the torchvision form (``tv:resnet18``; the narrow net is torchvision's
   BasicBlock ResNet-18 with every width halved, built below), at a small batch.
c. Compaction time per model: ``groups()`` (torch-pruning's tracing, once per model) and
   ``compact()`` (slicing; median of 3) at 50 % uniform channels.

Metrics per variant: parameters, forward GFLOPs per image (``torch.utils.flop_counter``),
``latency_ms`` at batch 1 and at the training batch (eval, no_grad) and
``train_step_ms`` (SGD momentum, forward + backward + step), from
``pruning_core.structured.speed``. Variants are timed interleaved (rotating order every
repetition; each repetition is one call with its own warm-up) and summarised by medians and
minima, so other load on the machine hits every variant alike (on a saturated shared CPU the
minimum, the least-disturbed run, is the steadier figure).

    python benchmarks/bench_structured.py --device cpu            # 6-15 min on 2 shared cores
    python benchmarks/bench_structured.py --device cpu --quick    # smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from pruning_core.masking.select import top_mask
from pruning_core.structured import (
    STRUCTURED_CRITERIA,
    StructuredContext,
    compact,
    full_keep,
    groups,
    latency_ms,
    node_sparsity,
    select_channels,
    train_step_ms,
)
from pruning_core.workloads.models import create_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class NarrowTvResNet18(nn.Module):
    """torchvision's ResNet-18 layout (7x7 stem, max pool, 4 stages x 2 BasicBlocks) with every
    width multiplied by ``width``: the hand-narrowed baseline."""

    def __init__(self, width: float = 0.5, num_classes: int = 10) -> None:
        super().__init__()
        widths = [int(c * width) for c in (64, 128, 256, 512)]
        c = widths[0]
        self.stem = nn.Sequential(nn.Conv2d(3, c, 7, 2, 3, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages = []
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or c != w:
                down = nn.Sequential(nn.Conv2d(c, w, 1, stride, bias=False), nn.BatchNorm2d(w))
            stages.append(nn.Sequential(BasicBlock(c, w, stride, down), BasicBlock(w, w)))
            c = w
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W)
        h = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))  # (B, classes)


def _ctx(model, gs, batches, shape):
    return StructuredContext(model=model, groups=gs, keep=full_keep(gs), batches=batches,
                             input_shape=shape, loss_fn=F.cross_entropy,
                             generator=torch.Generator().manual_seed(0))


def uniform_half(model: nn.Module, gs, shape) -> dict[int, torch.Tensor]:
    scores = STRUCTURED_CRITERIA.get("l1_filter")(_ctx(model, gs, [], shape))
    return {g.id: top_mask(scores[g.id], g.size // 2) for g in gs}


def snap_half(model: nn.Module, gs, shape, batch: int, device) -> tuple[dict, float]:
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(batch, *shape, generator=g).to(device),
                torch.randint(0, 10, (batch,), generator=g).to(device)) for _ in range(2)]
    start = time.perf_counter()
    scores = STRUCTURED_CRITERIA.get("snap")(_ctx(model, gs, batches, shape))
    seconds = time.perf_counter() - start
    return select_channels(scores, gs, 0.5), seconds


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, shape, device) -> int:
    """FLOPs of one eval-mode forward pass at batch 1 (``torch.utils.flop_counter``)."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape, device=device))
    model.train(was)
    return int(counter.get_total_flops())


def compare(variants: dict[str, nn.Module], shape, batch: int, reps: int, device) -> dict:
    """Interleaved medians of latency (batch 1, training batch) and train step per variant."""
    metrics = {
        "latency_ms_batch1": lambda m: latency_ms(m, shape, 1, device, warmup=2, repeats=3),
        "latency_ms_train_batch": lambda m: latency_ms(m, shape, batch, device, warmup=1,
                                                       repeats=1),
        "train_step_ms": lambda m: train_step_ms(m, shape, batch, device, warmup=1, repeats=1),
    }
    names = list(variants)
    raw: dict[str, dict[str, list[float]]] = {n: {k: [] for k in metrics} for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for key, fn in metrics.items():
            for n in order:
                raw[n][key].append(fn(variants[n]))
    out: dict[str, Any] = {}
    for n in names:
        out[n] = {k: statistics.median(v) for k, v in raw[n].items()}
        out[n].update({f"{k}_min": min(v) for k, v in raw[n].items()})
        out[n]["params"] = n_params(variants[n])
        out[n]["gflops_per_image"] = forward_flops(variants[n], shape, device) / 1e9
        out[n]["raw"] = raw[n]
    for n in names:
        for k in metrics:
            out[n][f"speedup_{k}"] = out["dense"][k] / out[n][k]
            out[n][f"speedup_{k}_min"] = out["dense"][f"{k}_min"] / out[n][f"{k}_min"]
    return out


def part_ab(label: str, build_dense, build_narrow, shape, batch: int, reps: int,
            device) -> dict:
    torch.manual_seed(0)  # each part on its own seed: the same models every run
    dense = build_dense().to(device).eval()
    narrow = build_narrow()
    gs = groups(dense, shape)
    keep_u = uniform_half(dense, gs, shape)
    keep_s, snap_s = snap_half(dense, gs, shape, batch, device)
    variants = {
        "dense": dense,
        "compact-uniform": compact(dense, gs, keep_u),
        "compact-snap": compact(dense, gs, keep_s),
        "narrow": narrow.to(device),
    }
    assert n_params(variants["compact-uniform"]) == n_params(variants["narrow"]), \
        "uniform half should have the narrow net's shapes"
    res = compare(variants, shape, batch, reps, device)
    res["node_sparsity"] = {"compact-uniform": node_sparsity(gs, keep_u),
                            "compact-snap": node_sparsity(gs, keep_s)}
    res["snap_scoring_s"] = snap_s
    res["shape"], res["batch"] = list(shape), batch
    for stat, suffix in (("medians", ""), ("minima", "_min")):
        print(f"\n{label}  input {shape}, train batch {batch}, {reps} interleaved reps "
              f"({stat})")
        print(f"{'variant':16s} {'params':>10s} {'GFLOPs':>7s} {'lat b1 ms':>10s} "
              f"{'lat bB ms':>10s} {'step ms':>10s} {'x lat b1':>8s} {'x lat bB':>8s} "
              f"{'x step':>7s}")
        for n in variants:
            r = res[n]
            print(f"{n:16s} {r['params']:>10,d} {r['gflops_per_image']:>7.3f} "
                  f"{r['latency_ms_batch1' + suffix]:>10.1f} "
                  f"{r['latency_ms_train_batch' + suffix]:>10.1f} "
                  f"{r['train_step_ms' + suffix]:>10.1f} "
                  f"{r['speedup_latency_ms_batch1' + suffix]:>8.2f} "
                  f"{r['speedup_latency_ms_train_batch' + suffix]:>8.2f} "
                  f"{r['speedup_train_step_ms' + suffix]:>7.2f}")
    return res


def part_c(device, quick: bool) -> dict:
    models = [("mlp", (1, 28, 28)), ("lenet5", (1, 28, 28)), ("vgg11_bn", (3, 32, 32)),
              ("resnet20", (3, 32, 32)), ("resnet18", (3, 32, 32)),
              ("tv:resnet18", (3, 224, 224)), ("tv:mobilenet_v2", (3, 224, 224)),
              ("tv:resnet50", (3, 224, 224))]
    if quick:
        models = [*models[:2], ("tv:resnet50", (3, 64, 64))]
    out = {}
    print("\nc. compaction time (50 % uniform channels)")
    print(f"{'model':18s} {'input':>14s} {'groups':>7s} {'groups() s':>11s} {'compact() s':>12s}")
    for name, shape in models:
        torch.manual_seed(0)
        model = create_model(name, shape, 10).to(device).eval()
        start = time.perf_counter()
        gs = groups(model, shape)
        groups_s = time.perf_counter() - start
        keep = uniform_half(model, gs, shape)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            compact(model, gs, keep)
            times.append(time.perf_counter() - start)
        out[name] = {"shape": list(shape), "groups": len(gs), "groups_s": groups_s,
                     "compact_s": statistics.median(times), "compact_raw_s": times}
        print(f"{name:18s} {shape!s:>14s} {len(gs):>7d} {groups_s:>11.2f} "
              f"{statistics.median(times):>12.3f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cifar-batch", type=int, default=32)
    ap.add_argument("--tv-batch", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="tiny shapes, 1 rep: a smoke test")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    reps = 1 if args.quick else args.reps
    cifar = (3, 16, 16) if args.quick else (3, 32, 32)
    tv = (3, 64, 64) if args.quick else (3, 224, 224)
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": str(device), "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "load_average_start": os.getloadavg(), "quick": args.quick,
    }
    result["a_cifar_resnet18"] = part_ab(
        "a. ResNet-18, CIFAR form", lambda: create_model("resnet18", cifar, 10),
        lambda: create_model("resnet18", cifar, 10, width=0.5), cifar, args.cifar_batch, reps,
        device)
    result["b_tv_resnet18"] = part_ab(
        "b. ResNet-18, torchvision form", lambda: create_model("tv:resnet18", tv, 10),
        lambda: NarrowTvResNet18(0.5, 10), tv, args.tv_batch, reps, device)
    result["c_compaction"] = part_c(device, args.quick)
    result["load_average_end"] = os.getloadavg()
    out = args.out or RESULTS_DIR / f"structured_{device.type}{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nload average start {result['load_average_start']}, end "
          f"{result['load_average_end']}; wrote {out}")


if __name__ == "__main__":
    main()
