"""Results at scale: a simulated 100,000-trial sweep, one file per trial against compacted.

    .venv/bin/python benchmarks/bench_results.py [--trials 100000] [--per-file 10000]

Every row is built by the real recorder, ``Recorder.build_row``, from stand-in trials (an
object with ``trial_id``, ``config``, ``last_result`` and ``run_metadata``, as a Ray ``Trial``
has) over the demo space (``search_spaces/demo_mnist1d.yaml``: its sampled configs, its
declared schema, 40 epochs of history and the CNN's per-layer sparsity per row). Then, in one
run on this machine:

* **one file per trial** (what a running sweep writes): ``--per-file`` rows through
  ``Recorder.record`` -> ``TrialStore.write`` (temp file + fsync + rename each). Recorder cost
  per row (build + write), as a share of a 1 s trial; resident memory (RSS) every 1,000 rows;
  the front query over those files; then ``compact`` on them;
* **compacted** (what every sweep ends with): ``--trials`` rows through ``Recorder.build_row``
  and the store's own row conversion (``schema.row_table``), written as part files by
  ``TrialStore.write_part`` (what ``compact`` writes); RSS every 10,000 rows; the front query.

The front query is what ``prunetune pareto RESULTS`` runs: a fresh ``sweeps.results.pareto.Results``
(DuckDB over the files, one row per trial, per-layer columns) and ``front`` over
``test_accuracy:max, sparsity:max`` fetching the table's columns; also with every column
(``--format json``). Median of 3 (the per-file query once: it is slow).

Prints a table and writes benchmarks/results/results_scale.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.results.compaction import ROWS_PER_PART, compact
from sweeps.results.pareto import Results
from sweeps.results.schema import row_table
from sweeps.results.store import TrialStore
from sweeps.tune.recorder import Recorder
from sweeps.tune.space import load_space

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "demo_mnist1d.yaml"
OBJECTIVES = ["test_accuracy:max", "sparsity:max"]
TABLE_COLUMNS = ["trial_id", "config.prune.criterion", "config.prune.schedule",
                 "config.prune.steps"]
EPOCHS = 40
log = logging.getLogger("bench_results")


@dataclass
class StandInTrial:
    """What ``Recorder.build_row`` reads from a Ray ``Trial``."""

    trial_id: str
    config: dict[str, Any]
    last_result: dict[str, Any]
    run_metadata: Any = field(default_factory=lambda: SimpleNamespace(num_failures=0))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def final_result(rng: np.random.Generator, layers: list[str]) -> dict[str, Any]:
    """A finished trial's final report (the shape ``trainable.final_metrics`` sends)."""
    sp = float(rng.uniform(0.5, 0.98))
    acc = float(np.clip(0.9 - 0.6 * sp**6 + rng.normal(0, 0.02), 0.05, 1.0))
    hist = [{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": acc * e / EPOCHS,
             "test_loss": 2.1 / e, "test_accuracy": acc * e / EPOCHS, "sparsity": sp}
            for e in range(1, EPOCHS + 1)]
    per_layer = {name: float(np.clip(sp + rng.normal(0, 0.03), 0, 0.999)) for name in layers}
    return {"final": True, "result_status": "ok", "result_error": None, "epoch": EPOCHS,
            "test_accuracy": acc, "test_loss": 0.4, "train_accuracy": acc + 0.02,
            "train_loss": 0.3, "sparsity": sp, "target_sparsity": round(sp, 2),
            "params": 40_000, "params_kept": int(40_000 * (1 - sp)), "flops_dense": 2_000_000,
            "flops": int(2_000_000 * (1 - sp)), "train_flops": 10**9, "prune_time_s": 0.02,
            "train_time_s": 12.0, "epochs": EPOCHS, "diverged_epoch": None, "n_collapsed": 0,
            "collapsed_layers": "[]", "layer_sparsity": json.dumps(per_layer),
            "similarity": "{}", "similarity_mean": math.nan, "history": json.dumps(hist),
            "time_total_s": 12.5, "node_ip": "10.0.0.1", "hostname": "node-1"}


def trials(n: int, configs: list[dict[str, Any]], layers: list[str], seed: int,
           prefix: str):
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield StandInTrial(f"{prefix}{i:06d}", configs[i % len(configs)],
                           final_result(rng, layers))


def front_time(path: Path, repeats: int) -> dict[str, Any]:
    """Median seconds of ``prunetune pareto``'s work (fresh connection each time)."""
    times, times_all, n_front = [], [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        with Results(path) as res:
            front = res.front(OBJECTIVES, columns=TABLE_COLUMNS)
        times.append(time.perf_counter() - t0)
        n_front = len(front)
        t0 = time.perf_counter()
        with Results(path) as res:
            res.front(OBJECTIVES)
        times_all.append(time.perf_counter() - t0)
    return {"front_s": statistics.median(times), "front_all_columns_s":
            statistics.median(times_all), "front_rows": n_front, "repeats": repeats}


def per_file_layout(rec: Recorder, n: int, configs: list[dict[str, Any]],
                    layers: list[str]) -> dict[str, Any]:
    build, write, rss = [], [], [rss_mb()]
    for i, trial in enumerate(trials(n, configs, layers, seed=1, prefix="f")):
        t0 = time.perf_counter()
        row = rec.build_row(trial)
        t1 = time.perf_counter()
        rec.store.write(row, rec.schema)
        t2 = time.perf_counter()
        build.append(t1 - t0)
        write.append(t2 - t1)
        if (i + 1) % 1000 == 0:
            rss.append(rss_mb())
    log.warning("per-file: %d rows written", n)
    per_row = np.array(build) + np.array(write)
    out = {"rows": n, "build_row_ms": 1e3 * float(np.mean(build)),
           "write_ms": 1e3 * float(np.mean(write)),
           "recorder_ms_per_row": 1e3 * float(np.mean(per_row)),
           "recorder_ms_p95": 1e3 * float(np.percentile(per_row, 95)),
           "share_of_1s_trial": float(np.mean(per_row)),
           "rss_mb": rss, "rss_growth_mb": rss[-1] - rss[1] if len(rss) > 2 else 0.0}
    out.update(front_time(Path(rec.store.base), repeats=1))
    log.warning("per-file: front %.2f s", out["front_s"])
    t0 = time.perf_counter()
    done = compact(rec.store)
    out["compact_s"] = time.perf_counter() - t0
    log.warning("per-file: compacted in %.1f s", out["compact_s"])
    out["compact_rows"] = done.rows
    out["front_after_compact"] = front_time(Path(rec.store.base), repeats=3)
    return out


def compacted_layout(rec: Recorder, n: int, configs: list[dict[str, Any]],
                     layers: list[str], batch: int = ROWS_PER_PART,
                     resumed: int = 100) -> dict[str, Any]:
    """Rows converted one by one (as ``TrialStore.write`` does), gathered 1,000 at a time
    into one contiguous table, written as a part every ``batch`` rows (the parts ``compact``
    writes). Then a resumed sweep: ``resumed`` more trials, one file each, and ``compact``
    (incremental: full parts stay as they are)."""
    rss, pending, done = [rss_mb()], [], []
    t_build = t_conv = t_write = 0.0
    stamp = {"recorded_at": time.time()}  # what TrialStore.write adds
    for i, trial in enumerate(trials(n, configs, layers, seed=2, prefix="c")):
        t0 = time.perf_counter()
        row = rec.build_row(trial)
        t1 = time.perf_counter()
        pending.append(row_table({**row, **stamp}, rec.schema))
        if len(pending) == 1000 or i == n - 1:
            done.append(pa.concat_tables(pending).combine_chunks())
            pending = []
        t_build += t1 - t0
        t_conv += time.perf_counter() - t1
        if sum(t.num_rows for t in done) == batch or i == n - 1:
            t2 = time.perf_counter()
            rec.store.write_part(pa.concat_tables(done))
            t_write += time.perf_counter() - t2
            done = []
            rss.append(rss_mb())
            log.warning("compacted: %d rows, RSS %.0f MB", i + 1, rss[-1])
    out = {"rows": n, "build_row_ms": 1e3 * t_build / n, "row_table_ms": 1e3 * t_conv / n,
           "write_part_s": t_write, "parts": len(rec.store.part_files()), "rss_mb": rss,
           "rss_growth_mb": rss[-1] - rss[1] if len(rss) > 2 else 0.0}
    out.update(front_time(Path(rec.store.base), repeats=3))
    t0 = time.perf_counter()  # what a sweep's end runs: nothing to merge, nothing rewritten
    done = compact(rec.store)
    out["compact_s"], out["compact_rows"] = time.perf_counter() - t0, done.rows
    out["parts_after_compact"] = len(rec.store.part_files())
    out["front_after_compact"] = front_time(Path(rec.store.base), repeats=3)
    log.warning("compacted: compact() left %d parts, %.1f s", out["parts_after_compact"],
                out["compact_s"])
    for trial in trials(resumed, configs, layers, seed=3, prefix="r"):
        rec.store.write(rec.build_row(trial), rec.schema)
    t0 = time.perf_counter()
    done = compact(rec.store)
    out["resumed"] = {"new_trials": resumed, "compact_s": time.perf_counter() - t0,
                      "rows_rewritten": done.rows, "files_read": done.files_read,
                      "parts": len(rec.store.part_files())}
    log.warning("resumed: %d new trials compacted in %.2f s (%d rows rewritten)", resumed,
                out["resumed"]["compact_s"], done.rows)
    # the same again, compacted as before incremental compaction (every row rewritten: no
    # part counts as full when a part may hold a billion rows)
    for trial in trials(resumed, configs, layers, seed=4, prefix="s"):
        rec.store.write(rec.build_row(trial), rec.schema)
    t0 = time.perf_counter()
    done = compact(rec.store, rows_per_part=10**9)
    out["resumed_full_rewrite"] = {"new_trials": resumed,
                                   "compact_s": time.perf_counter() - t0,
                                   "rows_rewritten": done.rows}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=100_000, help="rows, compacted layout")
    ap.add_argument("--per-file", type=int, default=10_000,
                    help="rows of the one-file-per-trial layout")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                    "results_scale.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    space = load_space(SPACE)
    base = space.base_config()
    from pruning_core.trials.experiment import prunable_layers
    from pruning_core.trials.registries import load_trial_config

    layers = [info.name for info in prunable_layers(load_trial_config(base))]
    configs = space.sample(256, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        per_file_rec = Recorder(space.name, TrialStore(f"{tmp}/per_file"), base, space=space)
        t0 = time.perf_counter()
        per_file = per_file_layout(per_file_rec, args.per_file, configs, layers)
        per_file["wall_s"] = time.perf_counter() - t0
        rec = Recorder(space.name, TrialStore(f"{tmp}/compacted"), base,
                       schema=per_file_rec.schema)
        t0 = time.perf_counter()
        compacted = compacted_layout(rec, args.trials, configs, layers)
        compacted["wall_s"] = time.perf_counter() - t0
        compacted["bytes"] = sum(os.path.getsize(p) for p in rec.store.files())
    doc = {"benchmark": "bench_results", "space": str(SPACE.relative_to(ROOT)),
           "columns": len(per_file_rec.schema), "layers": len(layers), "epochs": EPOCHS,
           "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                       "platform": platform.platform()},
           "per_file": per_file, "compacted": compacted}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    pf, cp = per_file, compacted
    rows = [
        ("rows", f"{pf['rows']:,}", f"{cp['rows']:,}"),
        ("files", f"{pf['rows']:,}", f"{cp['parts']}"),
        ("front, table columns (s)", f"{pf['front_s']:.2f}", f"{cp['front_s']:.3f}"),
        ("front, all columns (s)", f"{pf['front_all_columns_s']:.2f}",
         f"{cp['front_all_columns_s']:.3f}"),
        ("front rows", f"{pf['front_rows']}", f"{cp['front_rows']}"),
        ("recorder ms/row (build + write)", f"{pf['recorder_ms_per_row']:.2f} "
         f"(p95 {pf['recorder_ms_p95']:.2f})",
         f"{cp['build_row_ms'] + cp['row_table_ms']:.2f} (no file)"),
        ("share of a 1 s trial", f"{100 * pf['share_of_1s_trial']:.2f} %", "-"),
        ("RSS start -> end (MB)", f"{pf['rss_mb'][0]:.0f} -> {pf['rss_mb'][-1]:.0f}",
         f"{cp['rss_mb'][0]:.0f} -> {cp['rss_mb'][-1]:.0f}"),
    ]
    w = max(len(r[0]) for r in rows)
    print(f"{'':<{w}}  {'one file per trial':>22}  {'compacted':>16}")
    for name, a, b in rows:
        print(f"{name:<{w}}  {a:>22}  {b:>16}")
    pc = pf["front_after_compact"]
    print(f"compact {pf['compact_rows']:,} per-trial files: {pf['compact_s']:.1f} s; "
          f"front afterwards {pc['front_s']:.3f} s")
    cc = cp["front_after_compact"]
    print(f"compact again on {cp['parts']} parts of {cp['rows']:,} rows (each trial once: "
          f"nothing to do): {cp['compact_s']:.1f} s, {cp['parts_after_compact']} parts; front "
          f"{cc['front_s']:.3f} s (all columns {cc['front_all_columns_s']:.3f} s)")
    rs = cp["resumed"]
    print(f"resumed with {rs['new_trials']} new trials (one file each), compact: "
          f"{rs['compact_s']:.2f} s, {rs['rows_rewritten']:,} rows rewritten from "
          f"{rs['files_read']} files, {rs['parts']} parts")
    fr = cp["resumed_full_rewrite"]
    print(f"the same, every row rewritten (as before incremental compaction): "
          f"{fr['compact_s']:.2f} s, {fr['rows_rewritten']:,} rows")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
