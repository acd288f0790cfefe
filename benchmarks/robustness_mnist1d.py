"""The seed paper's robustness lens on MNIST-1D (issue 18): for each method of the MNIST-1D table
(``accuracy_mnist1d.py``: same configs, 3 seeds, 100 epochs) at 0.9 / 0.95 / 0.98, the test
accuracy, the adversarial accuracy (PGD, L-inf 8/255 of the valid input range, 10 steps, 512
seeded test examples: ``metrics.adversarial`` at its defaults), the generalisation gap (train -
test accuracy) and the effective sparsity. The screen is off, so doomed configs train and show
their chance-level numbers, as in the accuracy table.

    python benchmarks/robustness_mnist1d.py                      # 57 runs, ~10 min on 2 cores
    python benchmarks/robustness_mnist1d.py --seeds 0 --epochs 5 --methods snip   # smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_mnist1d import DEFAULT_METHODS, METHODS, trial_config

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLUMNS = ("test_accuracy", "adv_accuracy", "gap_accuracy", "effective_sparsity")


def config(method: str | None, sparsity: float, seed: int, epochs: int,
           eps: float | None = None) -> dict[str, Any]:
    cfg = trial_config(method, sparsity, seed, epochs)
    cfg["prune"]["screen"] = {"enabled": False}
    cfg["metrics"] = {"adversarial": {"attack": "pgd", "samples": 512, "eps": eps}}
    return cfg


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    from pruning_core.trials.experiment import run
    from pruning_core.trials.registries import load_trial_config

    start = time.perf_counter()
    r = run(load_trial_config(job["config"]))
    return {"method": job["method"], "target_sparsity": job["sparsity"],
            "seed": job["config"]["seed"], "status": r.status,
            "test_accuracy": r.test_accuracy, "train_accuracy": r.train_accuracy,
            "adv_accuracy": r.adv_accuracy, "gap_accuracy": r.gap_accuracy,
            "gap_loss": r.gap_loss, "sparsity": r.sparsity,
            "effective_sparsity": r.effective_sparsity,
            "disconnected_weights": r.disconnected_weights,
            "collapsed": len(r.collapsed_layers), "adversarial": r.adversarial,
            "wall_s": time.perf_counter() - start}


def aggregate(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["method"], r["target_sparsity"]), []).append(r)
    rows = []
    for (method, s), rs in groups.items():
        row: dict[str, Any] = {"method": method, "target_sparsity": s, "n": len(rs)}
        for col in (*COLUMNS, "gap_loss", "disconnected_weights"):
            vals = [float(r[col]) for r in rs if r[col] is not None]
            row[f"{col}_mean"] = statistics.mean(vals) if vals else float("nan")
            row[f"{col}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], sparsities: list[float]) -> str:
    """One line per method and sparsity: mean ± std of each column (percent)."""
    lines = ["| method | s | accuracy | adversarial accuracy | gap (train - test) | "
             "effective sparsity |", "|---|---|---|---|---|---|"]
    by = {(r["method"], r["target_sparsity"]): r for r in rows}
    for method in ["dense", *METHODS]:
        for s in ([0.0] if method == "dense" else sparsities):
            r = by.get((method, s))
            if r is None:
                continue
            cells = [f"{100 * r[c + '_mean']:.1f} ± {100 * r[c + '_std']:.1f}" for c in COLUMNS]
            lines.append(f"| {method} | {s:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=DEFAULT_METHODS)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--eps", type=float, default=None,
                   help="PGD budget in units of the valid input range (default 8/255)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "robustness_mnist1d.json")
    args = p.parse_args()
    jobs = [{"method": "dense", "sparsity": 0.0,
             "config": config(None, 0.0, s, args.epochs, args.eps)} for s in args.seeds]
    jobs += [{"method": m, "sparsity": sp, "config": config(m, sp, seed, args.epochs, args.eps)}
             for m in args.methods for sp in args.sparsities for seed in args.seeds]
    print(f"{len(jobs)} runs on {args.workers} worker(s)", flush=True)
    start = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(max_workers=args.workers,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        for i, r in enumerate(pool.map(run_one, jobs), 1):
            runs.append(r)
            print(f"[{i}/{len(jobs)}] {r['method']:20s} s={r['target_sparsity']:<5g} "
                  f"seed={r['seed']} acc={100 * r['test_accuracy']:.1f}% "
                  f"adv={100 * (r['adv_accuracy'] or 0):.1f}% {r['wall_s']:.1f}s", flush=True)
    wall = time.perf_counter() - start
    rows = aggregate(runs)
    table = markdown(rows, args.sparsities)
    print("\n" + table + f"\n\n{len(runs)} runs in {wall:.0f} s wall")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": dt.date.today().isoformat(), "wall_s": wall, "workers": args.workers,
        "epochs": args.epochs, "seeds": args.seeds, "sparsities": args.sparsities,
        "example_config": config("snip-it (5 steps)", args.sparsities[0], args.seeds[0],
                                 args.epochs),
        "rows": rows, "markdown": table, "runs": runs}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
