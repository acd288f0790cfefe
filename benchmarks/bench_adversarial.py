"""Adversarial accuracy (issue 18): what each attack costs next to one test-set evaluation.

The MNIST-1D 1-D CNN (``cnn1d``, Greydanus 2020; dense, Adam lr 1e-2, batch 128, ``--epochs``
epochs through ``pruning_core.trials.loop.train_epoch``) is trained once; then, in the same run:

- one full test-set evaluation (``pruning_core.trials.loop.evaluate``, 1,000 sequences, batch
  1,000 as ``data.eval_batch_size``): median of 20 (or ``--reps``) after a warm-up;
- ``pruning_core.measure.adversarial.adversarial_accuracy`` on ``--samples`` (512) seeded test
examples
  for each attack at its defaults (FGSM L∞ 8/255; PGD L∞ 8/255, 10 steps of 2/255, HYDRA's
  protocol; PGD L2 0.5; Carlini-Wagner L2 with foolbox's defaults, 9 x 10,000 steps, SNIP-it's
  protocol), and Carlini-Wagner with fewer steps (``--cw-steps``) as a cheaper option.
  FGSM and PGD: median of ``--reps``; Carlini-Wagner: once.

    python benchmarks/bench_adversarial.py --threads 1     # CPU: ~4 min (Carlini-Wagner)
    python benchmarks/bench_adversarial.py --quick         # smoke test: 2 epochs, CW 100 steps
    python benchmarks/bench_adversarial.py --device cuda

Writes ``benchmarks/results/adversarial_<device>.json`` (``_quick`` with ``--quick``) and prints
a table: time per attack and its multiple of one test-set evaluation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from pruning_core.config import AdversarialConfig, TrainConfig
from pruning_core.masking.masks import MaskSet
from pruning_core.masking.targets import prunable_parameters
from pruning_core.measure.adversarial import adversarial_accuracy, input_bounds, library
from pruning_core.trials.loop import evaluate, make_optimizer, train_epoch
from pruning_core.workloads.data import DataBundle, load_dataset
from pruning_core.workloads.models import create_model

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def train(data: DataBundle, epochs: int, device: torch.device) -> torch.nn.Module:
    """The dense cnn1d, trained as the MNIST-1D accuracy benchmark trains it."""
    torch.manual_seed(0)
    model = create_model("cnn1d", data.input_shape, data.num_classes).to(device)
    cfg = TrainConfig(epochs=epochs, optimizer="adam", lr=1e-2)
    opt = make_optimizer(model, cfg)
    masks = MaskSet(prunable_parameters(model))  # all ones: dense
    loader = DataLoader(data.train, batch_size=128, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    for _ in range(epochs):
        train_epoch(model, loader, opt, masks, device)
    opt.zero_grad(set_to_none=True)
    return model


def timed(fn: Callable[[], Any], reps: int, device: torch.device) -> tuple[float, list[float], Any]:
    """(median seconds, all seconds, last result) over ``reps`` calls."""
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def attacks(cw_steps: list[int], quick: bool) -> list[tuple[str, AdversarialConfig, bool]]:
    """(label, config, repeat?) for each timed attack; ``quick``: Carlini-Wagner 100 steps."""
    cw_default = ("carlini_wagner steps=100", AdversarialConfig(attack="carlini_wagner",
                                                                steps=100)) if quick else \
        ("carlini_wagner (default)", AdversarialConfig(attack="carlini_wagner"))
    rows = [("fgsm", AdversarialConfig(attack="fgsm"), True),
            ("pgd linf (default)", AdversarialConfig(attack="pgd"), True),
            ("pgd l2", AdversarialConfig(attack="pgd", norm="l2"), True), (*cw_default, False)]
    rows += [(f"carlini_wagner steps={s}", AdversarialConfig(attack="carlini_wagner", steps=s),
              False) for s in cw_steps]
    return rows


def bench(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    data = load_dataset("mnist1d")
    t0 = time.perf_counter()
    model = train(data, args.epochs, device)
    train_s = time.perf_counter() - t0
    test_loader = DataLoader(data.test, batch_size=1000)
    evaluate(model, test_loader, device)  # warm-up
    eval_s, eval_all, stats = timed(lambda: evaluate(model, test_loader, device),
                                    max(args.reps, 20), device)
    bounds = input_bounds(data.test, "mnist1d")
    rows = []
    for label, base, repeat in attacks(args.cw_steps, args.quick):
        cfg = base.model_copy(update={"samples": args.samples})
        if repeat:  # warm-up (first-call costs: foolbox import, attack classes)
            adversarial_accuracy(model, data.test, cfg, seed=0, device=device, bounds=bounds)
        s, all_s, r = timed(lambda c=cfg: adversarial_accuracy(
            model, data.test, c, seed=0, device=device, bounds=bounds),
            args.reps if repeat else 1, device)
        rows.append({"attack": label, "settings": r.settings, "adv_accuracy": r.adv_accuracy,
                     "clean_accuracy": r.clean_accuracy, "samples": r.samples, "time_s": s,
                     "all_s": all_s, "x_test_eval": s / eval_s})
        print(f"  {label:<28}{r.clean_accuracy:>8.3f}{r.adv_accuracy:>8.3f}{s:>10.3f}"
              f"{s / eval_s:>12.1f}x", flush=True)
    return {"train_epochs": args.epochs, "train_s": train_s, "test_examples": len(data.test),
            "test_accuracy": stats.accuracy, "eval_s": eval_s, "eval_all_s": eval_all,
            "bounds": list(bounds), "rows": rows}


def machine(device: torch.device) -> dict[str, Any]:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name"))
    except (StopIteration, OSError):
        cpu = platform.processor()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"cpu": cpu, "gpu": gpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "library": library(), "torch_threads": torch.get_num_threads(),
            "load_average_at_start": os.getloadavg(), "python": platform.python_version()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="2 epochs, Carlini-Wagner 100 steps")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--reps", type=int, default=5, help="repetitions of eval, FGSM and PGD")
    ap.add_argument("--cw-steps", type=int, nargs="*", default=[1000, 100],
                    help="extra Carlini-Wagner rows with fewer steps per binary-search step")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.epochs, args.reps, args.cw_steps = 2, 2, []
    device = torch.device(args.device)
    info = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **machine(device)}
    print(f"{info['date']}  {info['gpu'] or info['cpu']}  torch {info['torch']}  "
          f"{info['library']}  threads={info['torch_threads']}  "
          f"load={info['load_average_at_start']}")
    print(f"\n  {'attack':<28}{'clean':>8}{'adv':>8}{'seconds':>10}{'x 1 eval':>13}")
    result = {"machine": info, **bench(args, device)}
    print(f"\n  one test-set evaluation ({result['test_examples']:,} examples, accuracy "
          f"{result['test_accuracy']:.3f}): {result['eval_s'] * 1e3:.1f} ms; attacks on "
          f"{args.samples} seeded test examples")
    suffix = "_quick" if args.quick else ""
    out = args.out or RESULTS_DIR / f"adversarial_{device.type}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result["load_average_at_end"] = os.getloadavg()
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
