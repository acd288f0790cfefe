"""MNIST-1D accuracy of pruning before training: criteria x sparsity x seeds, on CPU.

Every run is a plain ``pruning_core.trials.experiment.run`` of a trial config (printed below and
saved
with the results): 1-D CNN (Greydanus 2020), Adam lr 1e-2, batch 128, masks chosen at
initialisation with global allocation, then trained with the masks enforced.

    python benchmarks/accuracy_mnist1d.py                         # full table, 57 runs, ~8 min
    python benchmarks/accuracy_mnist1d.py --seeds 0 --sparsities 0.9 --epochs 10   # smoke test

Writes ``benchmarks/results/accuracy_mnist1d.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: score batches of 128 -> data-driven criteria see 512 examples (SNIP-it scores on 512)
SCORE_BATCHES = 4

#: row label -> prune settings (criterion, schedule, steps)
METHODS: dict[str, dict[str, Any]] = {
    "magnitude": {"criterion": "magnitude", "schedule": "one_shot", "steps": 1},
    "random": {"criterion": "random", "schedule": "one_shot", "steps": 1},
    "snip": {"criterion": "snip", "schedule": "one_shot", "steps": 1},
    "snip-it (5 steps)": {"criterion": "snip", "schedule": "snip_it", "steps": 5},
    "grasp": {"criterion": "grasp", "schedule": "one_shot", "steps": 1},
    "synflow (100 steps)": {"criterion": "synflow", "schedule": "exponential", "steps": 100},
    # the engine's defaults before the fidelity work (issue 7), for comparison on demand:
    #   --methods "snip (old: train, per-batch)" "grasp (old: no Linear re-draw)" --no-dense
    "snip (old: train, per-batch)": {"criterion": "snip", "schedule": "one_shot", "steps": 1,
                                     "criterion_options": {"mode": "train",
                                                           "estimator": "per_batch"}},
    "grasp (old: no Linear re-draw)": {"criterion": "grasp", "schedule": "one_shot", "steps": 1,
                                       "criterion_options": {"reinit_linear": False}},
}
#: rows of the default table (the old-default rows run only when named with --methods)
DEFAULT_METHODS = [m for m in METHODS if "(old" not in m]


def trial_config(method: str | None, sparsity: float, seed: int, epochs: int) -> dict[str, Any]:
    """The exact trial config of one run (``method`` None = dense baseline)."""
    prune = {"criterion": "magnitude", "sparsity": 0.0, "schedule": "one_shot", "steps": 1}
    if method is not None:
        prune = {**METHODS[method], "sparsity": sparsity}
    return {
        "seed": seed,
        "model": {"name": "cnn1d"},
        "data": {"name": "mnist1d", "batch_size": 128},
        "train": {"epochs": epochs, "optimizer": "adam", "lr": 1e-2, "threads": 1,
                  "device": "cpu"},
        "prune": {**prune, "allocation": "global", "timing": "before",
                  "score_batches": SCORE_BATCHES},
    }


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Worker: one trial (imports here so each worker process sets its own thread count)."""
    from pruning_core.trials.experiment import run
    from pruning_core.trials.registries import load_trial_config

    start = time.perf_counter()
    result = run(load_trial_config(job["config"]))
    return {
        "method": job["method"], "target_sparsity": job["sparsity"],
        "seed": job["config"]["seed"], "config": job["config"],
        "status": result.status,
        "test_accuracy": result.test_accuracy, "train_accuracy": result.train_accuracy,
        "sparsity": result.sparsity, "layer_sparsity": result.layer_sparsity,
        "collapsed_layers": result.collapsed_layers,
        "prune_time_s": result.prune_time_s, "train_time_s": result.train_time_s,
        "wall_s": time.perf_counter() - start,
    }


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["method"], r["target_sparsity"]), []).append(r)
    rows = []
    for (method, s), rs in groups.items():
        accs = [r["test_accuracy"] for r in rs]
        rows.append({
            "method": method, "target_sparsity": s, "n": len(rs),
            "seeds": sorted(r["seed"] for r in rs),
            "acc_mean": statistics.mean(accs),
            "acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "collapsed_mean": statistics.mean(len(r["collapsed_layers"]) for r in rs),
            "achieved_sparsity_mean": statistics.mean(r["sparsity"] for r in rs),
            "prune_time_s_mean": statistics.mean(r["prune_time_s"] for r in rs),
            "train_time_s_mean": statistics.mean(r["train_time_s"] for r in rs),
        })
    return rows


def markdown(rows: list[dict[str, Any]], sparsities: list[float], n_seeds: int) -> str:
    """Methods as rows, sparsities as columns; cells: mean ± std % (mean collapsed layers)."""
    by = {(r["method"], r["target_sparsity"]): r for r in rows}
    head = "| method | " + " | ".join(f"s = {s:g}" for s in sparsities) + " |"
    lines = [head, "|---|" + "---|" * len(sparsities)]
    dense = by.get(("dense", 0.0))
    if dense:
        cell = f"{100 * dense['acc_mean']:.1f} ± {100 * dense['acc_std']:.1f}"
        lines.append(f"| dense (s = 0) | {cell} |" + " |" * (len(sparsities) - 1))
    for method in METHODS:
        cells = []
        for s in sparsities:
            r = by.get((method, s))
            cells.append("—" if r is None else
                         f"{100 * r['acc_mean']:.1f} ± {100 * r['acc_std']:.1f} "
                         f"({r['collapsed_mean']:.2g})")
        if any(c != "—" for c in cells):
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines.append(f"\nTest accuracy %, mean ± std over {n_seeds} seed(s); "
                 "(n) = mean number of collapsed layers.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=DEFAULT_METHODS)
    p.add_argument("--no-dense", action="store_true", help="skip the dense baseline row")
    p.add_argument("--workers", type=int, default=2, help="trials in parallel (1 thread each)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "accuracy_mnist1d.json")
    args = p.parse_args(argv)

    jobs = []
    if not args.no_dense:
        jobs += [{"method": "dense", "sparsity": 0.0,
                  "config": trial_config(None, 0.0, seed, args.epochs)} for seed in args.seeds]
    jobs += [{"method": m, "sparsity": s, "config": trial_config(m, s, seed, args.epochs)}
             for m in args.methods for s in args.sparsities for seed in args.seeds]
    print(f"{len(jobs)} runs on {args.workers} worker(s)", flush=True)
    start = time.perf_counter()
    runs = []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        for i, r in enumerate(pool.map(run_one, jobs), 1):
            runs.append(r)
            print(f"[{i}/{len(jobs)}] {r['method']:20s} s={r['target_sparsity']:<5g} "
                  f"seed={r['seed']} acc={100 * r['test_accuracy']:.1f}% "
                  f"collapsed={len(r['collapsed_layers'])} {r['wall_s']:.1f}s", flush=True)
    wall = time.perf_counter() - start
    rows = aggregate(runs)
    table = markdown(rows, args.sparsities, len(args.seeds))
    print("\n" + table)
    print(f"\n{len(runs)} runs in {wall:.0f} s wall")
    report = {
        "date": dt.date.today().isoformat(), "wall_s": wall, "workers": args.workers,
        "example_config": trial_config("snip-it (5 steps)", args.sparsities[0], args.seeds[0],
                                       args.epochs),
        "methods": METHODS, "seeds": args.seeds, "sparsities": args.sparsities,
        "epochs": args.epochs, "rows": rows, "markdown": table, "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
