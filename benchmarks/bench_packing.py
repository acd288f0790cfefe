"""Trial packing (issue 20): trials per hour, K members trained as one batched model against
the same K trials run one at a time (``experiment.run``), in the same run, plus peak memory.

Workloads: the demo space's network (``cnn1d`` on MNIST-1D, ``search_spaces/demo_mnist1d.yaml``:
Adam, batch 128) and ResNet-20 at CIFAR shapes (3x32x32, 10 classes) on synthetic data;
``--mlp-ks`` adds LeNet-300-100 on MNIST-1D (the same data and optimiser as cnn1d). Members
differ as a sweep's trials do: criterion, sparsity, seed, learning rate.

Each measurement runs in its own process (so peak memory is its own: ``ru_maxrss`` growth over
the process after warm-up on CPU, ``max_memory_allocated`` on CUDA); trials are whole trials
(build, score, prune, train, evaluate). One at a time runs ``min(K, --solo-max)`` trials spread
evenly over the pack (first to last member) and counts per trial (a trial's cost does not
depend on K). ``choose`` is what ``budget.pack: auto`` (``choose_packed``) decides for that pack,
from its own step timing.

    python benchmarks/bench_packing.py                      # small CPU sizes, a few minutes
    python benchmarks/bench_packing.py --device cuda --ks 1 8 32 128 --resnet-ks 1 8 32 128 \
        --train-examples 4000 --resnet-examples 2048

Writes ``benchmarks/results/packing_<device>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from child_env import child_env

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
CRITERIA = ["magnitude", "snip", "synflow", "random"]


def member_configs(workload: str, k: int, args: argparse.Namespace) -> list[Any]:
    from pruning_core.config import TrialConfig

    cfgs = []
    for i in range(k):
        if workload in ("cnn1d", "mlp"):
            d: dict[str, Any] = {
                "model": {"name": workload},
                "data": {"name": "mnist1d", "batch_size": args.batch,
                         "train_limit": args.train_examples, "test_limit": args.test_examples},
                "train": {"epochs": args.epochs, "optimizer": "adam",
                          "lr": 0.01 * (0.5 + (i % 5) / 4)}}
        else:
            d = {"model": {"name": "resnet20"},
                 "data": {"name": "synthetic", "batch_size": args.resnet_batch,
                          "options": {"num_train": args.resnet_examples,
                                      "num_test": args.test_examples, "shape": [3, 32, 32]}},
                 "train": {"epochs": args.epochs, "optimizer": "sgd", "momentum": 0.9,
                           "weight_decay": 5e-4, "lr": 0.05 * (0.5 + (i % 5) / 4)}}
        d["seed"] = i
        d["train"].update(device=args.device, threads=args.threads)
        d["prune"] = {"criterion": CRITERIA[i % len(CRITERIA)],
                      "sparsity": 0.5 + 0.45 * i / max(k, 2)}
        cfgs.append(TrialConfig.model_validate(d))
    return cfgs


def _peak_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def one(workload: str, k: int, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement, in this (child) process."""
    import torch

    from pruning_core.packing import decide, measure_steps, run_pack
    from pruning_core.packing.choose import MIN_STEP_SPEEDUP
    from pruning_core.trials.experiment import run

    torch.set_num_threads(args.threads)
    cfgs = member_configs(workload, k, args)
    warm = cfgs[0].model_copy(update={"train": cfgs[0].train.model_copy(update={"epochs": 0})})
    run(warm)  # imports, the dataset, first-call costs
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base = _peak_mb(args.device)
    out: dict[str, Any] = {"workload": workload, "k": k, "mode": mode}
    start = time.perf_counter()
    if mode == "solo":
        n = min(k, args.solo_max)
        # spread over the pack (not its first n): sparsity grows with the index and the
        # sparsest members may end `doomed` before training, so both sides average one mix
        picks = sorted({round(i * (k - 1) / max(n - 1, 1)) for i in range(n)})
        results = [run(cfgs[i]) for i in picks]
        n = len(picks)
        per_trial = (time.perf_counter() - start) / n
        out["trials_timed"] = n
    elif mode == "packed":
        results = run_pack(cfgs, batched=True)
        per_trial = (time.perf_counter() - start) / k
        timing = measure_steps(cfgs, steps=2, warmup=1)
        out["step_speedup"] = timing.speedup
        out["choose"] = "packed" if decide(timing, MIN_STEP_SPEEDUP) else "one at a time"
    else:
        raise ValueError(mode)
    out["s_per_trial"] = per_trial
    out["trials_per_hour"] = 3600 / per_trial
    out["peak_mb"] = _peak_mb(args.device) - base if not args.device.startswith("cuda") \
        else _peak_mb(args.device)
    out["statuses"] = sorted({r.status for r in results})
    return out


def _child(workload: str, k: int, mode: str, argv: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, *argv, "--one", workload, str(k), mode]
    env = child_env()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if p.returncode != 0:
        return {"workload": workload, "k": k, "mode": mode, "error": p.stderr[-2000:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ks", type=int, nargs="*", default=[1, 8, 32])
    ap.add_argument("--resnet-ks", type=int, nargs="*", default=[1, 8])
    ap.add_argument("--mlp-ks", type=int, nargs="*", default=[],
                    help="also LeNet-300-100 on MNIST-1D (where a CPU may gain)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--train-examples", type=int, default=512)
    ap.add_argument("--test-examples", type=int, default=256)
    ap.add_argument("--resnet-batch", type=int, default=128)
    ap.add_argument("--resnet-examples", type=int, default=256)
    ap.add_argument("--solo-max", type=int, default=4)
    ap.add_argument("--one", nargs=3, metavar=("WORKLOAD", "K", "MODE"))
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default results/packing_<device>.json)")
    args = ap.parse_args()
    if args.one:
        w, k, mode = args.one
        print(json.dumps(one(w, int(k), mode, args)))
        return
    argv = list(sys.argv[1:])
    rows = []
    plan = [("cnn1d", k) for k in args.ks] + [("resnet20", k) for k in args.resnet_ks] \
        + [("mlp", k) for k in args.mlp_ks]
    name = f"packing_{args.device.split(':')[0]}" + ("_mlp" if args.mlp_ks and not args.ks else "")
    path = args.out or RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    for workload, k in plan:
        solo = _child(workload, k, "solo", argv)
        packed = _child(workload, k, "packed", argv)
        row = {"workload": workload, "k": k, "solo": solo, "packed": packed}
        if "error" not in solo and "error" not in packed:
            row["speedup"] = packed["trials_per_hour"] / solo["trials_per_hour"]
        rows.append(row)
        _print_row(row)
        _write(path, args, rows)  # after every row: a run stopped by a timeout keeps its rows
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; wrote {path}")


def _write(path: Path, args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    payload = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "machine": _device_name(args.device), "cpus": os.cpu_count(),
               "load_avg": os.getloadavg(),
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "rows": rows}
    path.write_text(json.dumps(payload, indent=2))


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    return platform.processor() or platform.machine()


def _print_row(row: dict[str, Any]) -> None:
    if "speedup" not in row:
        err = row["solo"].get("error") or row["packed"].get("error")
        print(f"{row['workload']:9s} K={row['k']:<4d} error: {err[-300:]}")
        return
    s, p = row["solo"], row["packed"]
    print(f"{row['workload']:9s} K={row['k']:<4d} one-at-a-time {s['trials_per_hour']:9.0f}/h "
          f"(peak +{s['peak_mb']:.0f} MB)  packed {p['trials_per_hour']:9.0f}/h "
          f"(peak +{p['peak_mb']:.0f} MB)  x{row['speedup']:.2f}  "
          f"step x{p['step_speedup']:.2f} -> auto: {p['choose']}", flush=True)


if __name__ == "__main__":
    main()
