"""Engine benchmarks: what pruning costs next to plain training, measured in one run.

a. masked train step (ours: ``MaskSet.apply`` = one ``torch._foreach_mul_`` after the step) vs a
   dense step vs ``torch.nn.utils.prune`` forward pre-hooks (``custom_from_mask`` on the same
   masks) vs a per-tensor ``mul_`` loop after the step. ResNet-18 (CIFAR form), SGD momentum 0.9,
   weight decay 5e-4, masks from global magnitude pruning to sparsity 0.9.
b. SNIP scoring (``Pruner.scores()`` over N batches) vs N plain forward+backward passes.
c. SynFlow, 100 iterations (exponential schedule to 0.99, global) on VGG-16-BN at CIFAR-100
   shapes: total seconds of ``Pruner.step``, with the scoring share broken out.
d. peak GPU memory while scoring (SNIP / SynFlow / GraSP) vs one training step (GPU only).
e. in passing: every ``Pruner.step`` keeps ``round((1 - s) * N)`` weights, within one.

Variants are timed interleaved (rotating order every repetition) and summarised by medians, so
other load on the machine hits every variant alike; ratios are medians of per-repetition ratios.

    python benchmarks/bench_engine.py --device cpu            # ~6 min on 2 idle cores
    python benchmarks/bench_engine.py --device cuda           # the H100 targets
    python benchmarks/bench_engine.py --device cpu --quick    # small shapes, smoke test
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as torch_prune

from pruning_core.config import AllocationConfig
from pruning_core.masking.engine import Pruner
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.schedules import sparsity_steps
from pruning_core.masking.targets import prunable_parameters
from pruning_core.workloads.models import create_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GLOBAL = AllocationConfig(name="global")

# GPU targets from the issue (H100); reference figures from shared/baselines (H100, 2026-11-23).
TARGETS = {
    "train_step_ours_ratio": 1.03,
    "snip_ratio": 1.15,
    "synflow_100_iter_s": 1.0,
}
REFERENCE = {
    "train_step_hooks_ratio_h100": 1.224,
    "synflow_100_iter_s_synaptic_flow_h100": 13.0,
}


# --------------------------------------------------------------------------- timing


class Timer:
    """Seconds per call of ``fn`` over ``n`` calls: CUDA events on a GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, fn: Callable[[], Any], n: int) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(n):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3 / n
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n


def interleaved(timer: Timer, fns: dict[str, Callable[[], Any]], reps: int, inner: int,
                warmup: int) -> dict[str, list[float]]:
    """Per-repetition seconds per call for each variant; the order rotates every repetition."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    timer.sync()
    names = list(fns)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(timer(fns[name], inner))
    return out


def summarise(times: dict[str, list[float]], base: str) -> dict[str, dict[str, float]]:
    """Median ms per variant and the median of per-repetition ratios to ``base``."""
    out = {}
    for name, ts in times.items():
        ratios = [t / b for t, b in zip(ts, times[base], strict=True)]
        out[name] = {
            "median_ms": 1e3 * statistics.median(ts),
            "min_ms": 1e3 * min(ts),
            "ratio": statistics.median(ratios),
            "ratio_of_medians": statistics.median(ts) / statistics.median(times[base]),
            "reps": len(ts),
        }
    return out


# --------------------------------------------------------------------------- helpers


def check_step(checks: list[dict[str, Any]], where: str, masks: MaskSet, target: float) -> None:
    """Record achieved vs expected kept weights after a ``Pruner.step(target)``."""
    n = masks.numel()
    expected = round((1.0 - target) * n)
    kept = masks.kept()
    checks.append({"where": where, "target": target, "numel": n, "expected_kept": expected,
                   "kept": kept, "diff": kept - expected, "ok": abs(kept - expected) <= 1})


def random_batches(n: int, batch: int, shape: tuple[int, ...], classes: int,
                   device: torch.device, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, *shape, generator=g).to(device),
             torch.randint(0, classes, (batch,), generator=g).to(device)) for _ in range(n)]


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               after: Callable[[], None] | None = None) -> Callable[[], None]:
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if after is not None:
            after()

    return step


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


# --------------------------------------------------------------------------- a. train step


def bench_train_step(args: argparse.Namespace, device: torch.device, timer: Timer,
                     checks: list[dict[str, Any]]) -> dict[str, Any]:
    torch.manual_seed(0)
    base = create_model("resnet18", (3, 32, 32), 10).to(device)
    x, y = random_batches(1, args.batch, (3, 32, 32), 10, device, seed=1)[0]

    # masks: global magnitude to 0.9 via the engine (also checks the achieved sparsity)
    ours = copy.deepcopy(base)
    masks = MaskSet(prunable_parameters(ours))
    Pruner(model=ours, masks=masks, criterion="magnitude", allocation=GLOBAL,
           final_sparsity=0.9, batches=[], input_shape=(3, 32, 32)).step(0.9)
    check_step(checks, "resnet18 magnitude one-shot", masks, 0.9)
    bool_masks = {n: m.clone() for n, m in masks.masks.items()}

    dense = copy.deepcopy(base)
    dense_opt = sgd(dense)

    ours_opt = sgd(ours)

    hooks = copy.deepcopy(base)
    for name, mask in bool_masks.items():
        torch_prune.custom_from_mask(hooks.get_submodule(name.rsplit(".", 1)[0]), "weight",
                                     mask)
    hooks_opt = sgd(hooks)  # after the re-parametrisation: optimises weight_orig

    loop = copy.deepcopy(ours)
    loop_params = prunable_parameters(loop)
    loop_masks = [bool_masks[n].to(p.dtype) for n, p in loop_params.items()]
    loop_ws = list(loop_params.values())
    loop_opt = sgd(loop)

    @torch.no_grad()
    def mask_loop() -> None:
        for w, m in zip(loop_ws, loop_masks, strict=True):
            w.mul_(m)

    fns = {
        "dense": train_step(dense, dense_opt, x, y),
        "ours (foreach mask after step)": train_step(ours, ours_opt, x, y, masks.apply),
        "torch.nn.utils.prune hooks": train_step(hooks, hooks_opt, x, y),
        "mask after step, per-tensor mul_": train_step(loop, loop_opt, x, y, mask_loop),
    }
    times = interleaved(timer, fns, reps=args.reps, inner=args.inner, warmup=args.warmup)
    # the masked weights stayed exactly zero under momentum + weight decay
    still_zero = all(bool((p[~bool_masks[n]] == 0).all())
                     for n, p in prunable_parameters(ours).items())
    return {"model": "resnet18 (CIFAR form)", "batch": args.batch, "sparsity": 0.9,
            "optimizer": "SGD lr 0.01 momentum 0.9 weight_decay 5e-4",
            "reps": args.reps, "steps_per_rep": args.inner,
            "pruned_weights_still_zero": still_zero,
            "results": summarise(times, "dense"), "raw_s": times}


# --------------------------------------------------------------------------- b. SNIP


def bench_snip(args: argparse.Namespace, device: torch.device, timer: Timer,
               checks: list[dict[str, Any]]) -> dict[str, Any]:
    torch.manual_seed(0)
    model = create_model("resnet18", (3, 32, 32), 10).to(device).train()
    batches = random_batches(args.snip_batches, args.batch, (3, 32, 32), 10, device, seed=2)
    masks = MaskSet(prunable_parameters(model))
    pruner = Pruner(model=model, masks=masks, criterion="snip", allocation=GLOBAL,
                    final_sparsity=0.9, batches=batches, input_shape=(3, 32, 32))

    def fwd_bwd() -> None:
        model.zero_grad(set_to_none=True)
        for bx, by in batches:
            F.cross_entropy(model(bx), by).backward()

    times = interleaved(timer, {"plain fwd+bwd": fwd_bwd, "SNIP scores": pruner.scores},
                        reps=args.reps, inner=1, warmup=args.warmup)
    model.zero_grad(set_to_none=True)
    pruner.step(0.9)
    check_step(checks, "resnet18 snip one-shot", masks, 0.9)
    return {"model": "resnet18 (CIFAR form)", "batch": args.batch,
            "batches": args.snip_batches, "reps": args.reps,
            "results": summarise(times, "plain fwd+bwd"), "raw_s": times}


# --------------------------------------------------------------------------- c. SynFlow


def bench_synflow(args: argparse.Namespace, device: torch.device, timer: Timer,
                  checks: list[dict[str, Any]]) -> dict[str, Any]:
    torch.manual_seed(0)
    model = create_model("vgg16_bn", (3, 32, 32), 100).to(device)
    masks = MaskSet(prunable_parameters(model))
    pruner = Pruner(model=model, masks=masks, criterion="synflow", allocation=GLOBAL,
                    final_sparsity=0.99, batches=[], input_shape=(3, 32, 32))
    schedule = sparsity_steps("exponential", 0.99, 100)
    iters = min(args.synflow_iters, len(schedule))
    # a subset runs evenly spaced steps of the real schedule, ending at 0.99
    picked = [schedule[round((i + 1) * len(schedule) / iters) - 1] for i in range(iters)]
    pruner.scores()  # warm-up (allocator, kernels); leaves the model untouched
    timer.sync()
    score_s, step_s = [], []
    for s in picked:
        score_s.append(timer(pruner.scores, 1))  # the scoring part alone, same masks
        step_s.append(timer(lambda s=s: pruner.step(s), 1))  # score + allocate + select + apply
        check_step(checks, "vgg16_bn synflow exponential", masks, s)
    total = sum(step_s)
    scale = len(schedule) / iters
    return {"model": "vgg16_bn", "input_shape": [3, 32, 32], "classes": 100,
            "schedule": "exponential to 0.99, 100 steps, global",
            "iterations_run": iters, "prunable_weights": masks.numel(),
            "total_s": total, "per_step_ms_median": 1e3 * statistics.median(step_s),
            "scoring_only_ms_median": 1e3 * statistics.median(score_s),
            "selection_share": 1.0 - sum(score_s) / total,
            "extrapolated_100_iter_s": total * scale if iters < len(schedule) else None,
            "final_sparsity": masks.sparsity(), "collapsed_layers": masks.collapsed(),
            "step_s": step_s, "scores_s": score_s}


# --------------------------------------------------------------------------- d. memory


def bench_memory(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {"note": "n/a (no GPU)"}
    torch.manual_seed(0)
    model = create_model("resnet18", (3, 32, 32), 10).to(device)
    batches = random_batches(args.snip_batches, args.batch, (3, 32, 32), 10, device, seed=3)
    masks = MaskSet(prunable_parameters(model))
    opt = sgd(model)
    x, y = batches[0]
    step = train_step(model, opt, x, y, masks.apply)
    step()  # momentum buffers exist from here on: the steady-state training footprint
    model.zero_grad(set_to_none=True)

    def pruner(name: str) -> Callable[[], Any]:
        return Pruner(model=model, masks=masks, criterion=name, allocation=GLOBAL,
                      final_sparsity=0.9, batches=batches, input_shape=(3, 32, 32)).scores

    def peak(fn: Callable[[], Any]) -> dict[str, float]:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        out = fn()
        torch.cuda.synchronize()
        top = torch.cuda.max_memory_allocated()
        del out
        return {"peak_mib": top / 2**20, "above_resident_mib": (top - before) / 2**20}

    res = {"train step (1 batch)": peak(step)}
    model.zero_grad(set_to_none=True)
    for name in ("snip", "grasp", "synflow"):
        res[f"{name} scores"] = peak(pruner(name))
    train = res["train step (1 batch)"]["peak_mib"]
    for r in res.values():
        r["ratio_to_train_step"] = r["peak_mib"] / train
    return {"model": "resnet18 (CIFAR form)", "batch": args.batch,
            "score_batches": args.snip_batches, "synflow_batch": 1, "results": res}


# --------------------------------------------------------------------------- report


def print_report(report: dict[str, Any]) -> None:
    dev = report["device"]
    print(f"\nprunetune engine benchmark, {report['date']}, {dev['type']}: {dev['name']}, "
          f"torch {report['torch']}, threads {dev['threads']}")
    a = report["train_step"]
    print(f"\na. train step, {a['model']}, batch {a['batch']}, sparsity 0.9 "
          f"(median of {a['reps']} reps x {a['steps_per_rep']} steps)")
    print(f"   {'variant':36s} {'ms/step':>9s} {'x dense':>8s}")
    for name, r in a["results"].items():
        print(f"   {name:36s} {r['median_ms']:9.2f} {r['ratio']:8.3f}")
    print(f"   pruned weights still exactly zero after training steps: "
          f"{a['pruned_weights_still_zero']}")
    b = report["snip"]
    print(f"\nb. SNIP scoring, {b['model']}, {b['batches']} batches of {b['batch']}")
    for name, r in b["results"].items():
        print(f"   {name:36s} {r['median_ms']:9.2f} {r['ratio']:8.3f}")
    c = report["synflow"]
    print(f"\nc. SynFlow, {c['model']} ({c['prunable_weights']:,} prunable weights), "
          f"{c['schedule']}")
    print(f"   iterations run: {c['iterations_run']}, total {c['total_s']:.2f} s, "
          f"per step {c['per_step_ms_median']:.1f} ms (scoring alone "
          f"{c['scoring_only_ms_median']:.1f} ms; allocation+selection "
          f"{100 * c['selection_share']:.0f}% of the step)")
    if c["extrapolated_100_iter_s"] is not None:
        print(f"   EXTRAPOLATED to 100 iterations (x{100 / c['iterations_run']:.0f}): "
              f"{c['extrapolated_100_iter_s']:.1f} s")
    print(f"   final sparsity {c['final_sparsity']:.6f}, collapsed layers "
          f"{len(c['collapsed_layers'])}")
    d = report["memory"]
    print("\nd. peak memory while scoring")
    if "results" not in d:
        print(f"   {d['note']}")
    else:
        for name, r in d["results"].items():
            print(f"   {name:36s} {r['peak_mib']:9.0f} MiB {r['ratio_to_train_step']:8.2f}x")
    e = report["sparsity_checks"]
    bad = [c for c in e if not c["ok"]]
    worst = max(abs(c["diff"]) for c in e)
    print(f"\ne. Pruner.step achieved sparsity: {len(e)} steps checked, max |kept - "
          f"round((1-s)N)| = {worst} weight(s), {'OK' if not bad else f'{len(bad)} FAILED'}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if
                   torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="small shapes, few repetitions")
    p.add_argument("--batch", type=int, help="train/SNIP batch (default 256 cuda, 32 cpu)")
    p.add_argument("--reps", type=int, help="interleaved repetitions per variant")
    p.add_argument("--inner", type=int, help="train steps timed per repetition")
    p.add_argument("--warmup", type=int, help="untimed calls per variant first")
    p.add_argument("--snip-batches", type=int, help="batches SNIP scores over (default 5)")
    p.add_argument("--synflow-iters", type=int,
                   help="SynFlow steps actually run, evenly spaced over the 100-step schedule "
                        "(default 100 cuda, 20 cpu; fewer than 100 gives a clearly labelled "
                        "extrapolation)")
    p.add_argument("--out", type=Path, help="JSON path (default results/engine_<device>.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            p.error("--device cuda but torch.cuda.is_available() is False")
        # as in shared/baselines/gpu_anchors.py, so ratios compare with its figures
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    gpu = device.type == "cuda"
    defaults = {  # (full, quick)
        "batch": ((256, 64) if gpu else (32, 8)),
        "reps": ((15, 3) if gpu else (7, 3)),
        "inner": ((10, 3) if gpu else (1, 1)),
        "warmup": ((10, 3) if gpu else (1, 1)),
        "snip_batches": ((5, 2) if gpu else (3, 2)),
        "synflow_iters": ((100, 10) if gpu else (20, 5)),
    }
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)

    name = torch.cuda.get_device_name(device) if gpu else cpu_name()
    report: dict[str, Any] = {
        "date": dt.date.today().isoformat(),
        "device": {"type": device.type, "name": name, "threads": torch.get_num_threads(),
                   "cpu": cpu_name(), "platform": platform.platform()},
        "torch": torch.__version__, "quick": args.quick,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "targets_gpu_h100": TARGETS, "reference": REFERENCE,
    }
    timer = Timer(device)
    checks: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    out = args.out or RESULTS_DIR / f"engine_{device.type}{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "train_step": lambda: bench_train_step(args, device, timer, checks),
        "snip": lambda: bench_snip(args, device, timer, checks),
        "synflow": lambda: bench_synflow(args, device, timer, checks),
        "memory": lambda: bench_memory(args, device),
    }
    for key, section in sections.items():
        report[key] = section()
        report["sparsity_checks"] = checks
        report["wall_s"] = time.perf_counter() - t0
        # after every section: a run stopped by a timeout keeps what it measured
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"[{report['wall_s']:.0f} s] {key} done", flush=True)
    print_report(report)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {out} ({report['wall_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
