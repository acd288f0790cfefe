"""Pareto front over 1M Parquet rows: read + front, 2 and 3 objectives, vs Optuna's front code.

    .venv/bin/python benchmarks/bench_pareto.py [N_ROWS] [--files 4] [--repeats 5]

Writes N rows (trial-like schema: metrics, config.* and layer_sparsity.* columns) as a few
Parquet files in a temp dir, then times, in one run on this machine (median of --repeats):

* ours, 2 and 3 objectives: ``Results(dir).front(...)`` — DuckDB reads the objective columns
  of ``status = 'ok'`` rows, numpy finds the front, DuckDB fetches the front's rows: the key
  columns ``prunetune pareto`` shows, or all 31 columns (csv/json output). Fetching all columns
  decodes every column of the row groups holding a front row, which is most of the cost;
* Optuna's own front extraction (``optuna.study._multi_objective._is_pareto_front``) on the
  same rows already in memory (its read is not counted), as in /work/shared/baselines;
* the baselines' numpy sort-sweep incl. read (drops duplicate front points).

Prints a table and writes benchmarks/results/pareto.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.results.pareto import Results, pareto_mask

LAYERS = [f"features.{i}.weight" for i in range(0, 16, 2)] + ["classifier.weight"]


def make_table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    sp = rng.uniform(0.5, 0.999, n)
    acc = 0.95 - 0.5 * (sp - 0.5) ** 3 + rng.normal(0, 0.03, n)
    flops = (rng.uniform(1e6, 1e9, n) * (1 - sp)).astype(np.int64)
    crit = rng.choice(["snip", "synflow", "grasp", "magnitude", "random"], n)
    cols: dict[str, Any] = {
        "sweep": np.full(n, "bench"),
        "trial_id": np.char.add("t", np.arange(seed * n, seed * n + n).astype(str)),
        "status": np.where(rng.random(n) < 0.97, "ok",
                           rng.choice(["error", "diverged", "stopped_early"], n)),
        "test_accuracy": acc, "test_loss": rng.uniform(0.1, 2, n),
        "train_accuracy": acc + 0.02, "sparsity": sp, "target_sparsity": np.round(sp, 2),
        "params": np.full(n, 11_000_000), "params_kept": (11_000_000 * (1 - sp)).astype(np.int64),
        "flops_dense": np.full(n, 1_000_000_000), "flops": flops,
        "prune_time_s": rng.uniform(0, 5, n), "train_time_s": rng.uniform(10, 100, n),
        "epochs": np.full(n, 10), "n_collapsed": rng.integers(0, 2, n), "seed": np.arange(n),
        "config.prune.criterion": crit, "config.prune.sparsity": np.round(sp, 2),
        "config.prune.schedule": rng.choice(["one_shot", "linear", "exponential"], n),
        "config.prune.steps": rng.integers(1, 100, n), "config.model.name": np.full(n, "vgg16"),
    }
    for name in LAYERS:
        cols[f"layer_sparsity.{name}"] = np.clip(sp + rng.normal(0, 0.05, n), 0, 1)
    return pa.table(cols)


def write_dataset(d: Path, n: int, files: int) -> None:
    (d / "trials").mkdir(parents=True, exist_ok=True)
    per = -(-n // files)
    for i in range(files):
        m = min(per, n - i * per)
        pq.write_table(make_table(m, i), d / "trials" / f"part{i}.parquet")


def timed(f: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rows", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pareto.json"))
    args = ap.parse_args()

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_dataset(d, args.rows, args.files)
        objs2 = ["test_accuracy:max", "sparsity:max"]
        objs3 = [*objs2, "flops:min"]

        def ours(objs: list[str], columns: list[str] | None) -> Callable[[], int]:
            def run() -> int:
                with Results(d) as res:
                    return len(res.front(objs, columns=columns))
            return run

        key_cols = ["trial_id", "criterion", "schedule", "steps"]  # what `pareto` shows
        for label, objs in (("2 objectives", objs2), ("3 objectives", objs3)):
            t, size = timed(ours(objs, key_cols), args.repeats)
            rows.append({"what": f"prunetune read + front, {label} (key columns)",
                         "seconds": t, "front": size})
            t, size = timed(ours(objs, None), args.repeats)
            rows.append({"what": f"prunetune read + front, {label} (all 31 columns)",
                         "seconds": t, "front": size})

        # the same rows, in memory, for the baselines
        tbl = pq.read_table(d / "trials", columns=["status", "test_accuracy", "sparsity",
                                                   "flops"])
        ok = tbl.column("status").to_numpy(zero_copy_only=False) == "ok"
        mat = np.column_stack([tbl.column(c).to_numpy()[ok].astype(np.float64)
                               for c in ("test_accuracy", "sparsity", "flops")])
        t, size = timed(lambda: int(pareto_mask(mat[:, :2], ["max", "max"]).sum()),
                        args.repeats)
        rows.append({"what": "prunetune pareto_mask in memory, 2 objectives", "seconds": t,
                     "front": size})
        t, size = timed(lambda: int(pareto_mask(mat, ["max", "max", "min"]).sum()),
                        args.repeats)
        rows.append({"what": "prunetune pareto_mask in memory, 3 objectives", "seconds": t,
                     "front": size})
        try:
            from optuna.study._multi_objective import _is_pareto_front

            loss2 = -mat[:, :2]
            loss3 = np.column_stack([-mat[:, 0], -mat[:, 1], mat[:, 2]])
            for label, loss in (("2 objectives", loss2), ("3 objectives", loss3)):
                t, size = timed(lambda loss=loss: int(_is_pareto_front(
                    loss, assume_unique_lexsorted=False).sum()), 1)
                rows.append({"what": f"optuna _is_pareto_front in memory, {label}",
                             "seconds": t, "front": size})
        except ImportError as exc:  # pragma: no cover - optuna is a dependency
            rows.append({"what": f"optuna unavailable: {exc}", "seconds": float("nan"),
                         "front": None})

        files = [str(p) for p in sorted((d / "trials").glob("*.parquet"))]

        def floor_numpy() -> int:  # /work/shared/baselines/pareto_floor.py numpy_path
            t_ = pa.concat_tables(pq.read_table(f, columns=["status", "sparsity",
                                                            "test_accuracy"]) for f in files)
            okm = t_["status"].to_numpy(zero_copy_only=False) == "ok"
            a = t_["test_accuracy"].to_numpy()[okm]
            b = t_["sparsity"].to_numpy()[okm]
            o = np.lexsort((-b, -a))
            bs = b[o]
            cm = np.maximum.accumulate(bs)
            keep = np.empty(len(o), bool)
            keep[0] = True
            keep[1:] = bs[1:] > cm[:-1]
            return int(keep.sum())

        t, size = timed(floor_numpy, args.repeats)
        rows.append({"what": "baseline numpy lexsort sweep incl. read, 2 objectives",
                     "seconds": t, "front": size})

    width = max(len(r["what"]) for r in rows)
    print(f"rows={args.rows} files={args.files} cpus={os.cpu_count()} "
          f"median of {args.repeats} (optuna: 1 run)")
    for r in rows:
        print(f"{r['what']:<{width}}  {r['seconds']:8.3f} s  front {r['front']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "rows": args.rows, "files": args.files, "repeats": args.repeats,
        "cpus": os.cpu_count(), "machine": platform.platform(),
        "python": platform.python_version(), "results": rows,
        "targets_s": {"2 objectives": 0.5, "3 objectives": 3.0},
    }, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
