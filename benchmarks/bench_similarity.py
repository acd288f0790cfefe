"""Similarity benchmarks (issue 11), measured in one run:

a. linear CKA over 10,000 examples x 4,096 features (both sides): ours (``linear_cka``, torch,
   feature-space formula, float64 centring and sums, float32 products by ``precision="auto"``)
   vs a naive numpy implementation of the paper's formula (Grams K = XXᵀ, L = YYᵀ and an
   explicit centring matrix H: tr(KHLH) / √(tr(KHKH) tr(LHLH))), in float64; for context, ours
   with ``precision="float64"`` and numpy running the same feature-space formula as ours.
   Goal: ours >= 5x faster than naive on CPU.
b. SVCCA (and PWCCA) at 2,000 examples x 512 features, torch's default threads, then SVCCA with
   one thread. Goal: <= 1 s on CPU.
c. peak resident memory of streamed CKA (``StreamingCKA``, batches of 1,000 rows made on the fly)
   at 10k vs 100k examples, each in a fresh subprocess, next to in-memory ``linear_cka`` on the
   same data. Goal: the streamed peak stays flat.

    python benchmarks/bench_similarity.py            # minutes: the naive baseline dominates
    python benchmarks/bench_similarity.py --quick    # small shapes, smoke test

Times are medians over repetitions (the naive baseline runs once: it takes minutes). Writes
``benchmarks/results/similarity.json`` (``similarity_quick.json`` with ``--quick``).
``--parts b --threads 1`` reruns one part under one thread (small matrices on a busy machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from child_env import child_env

from pruning_core.similarity import linear_cka, pwcca, svcca

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, list[float], Any]:
    """(median seconds, all seconds, last result) over ``reps`` calls."""
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def naive_numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The formula as written: HSIC(K, L) = tr(KHLH) / (n-1)², H = I - 11ᵀ/n."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    kh, lh = (x @ x.T) @ h, (y @ y.T) @ h
    hsic_kl = np.sum(kh * lh.T)  # tr(KH LH)
    hsic_kk, hsic_ll = np.sum(kh * kh.T), np.sum(lh * lh.T)
    return float(hsic_kl / np.sqrt(hsic_kk * hsic_ll))


def feature_numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """numpy, same feature-space formula as ours: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), centred."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def bench_cka(n: int, p: int, reps: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, p))
    y = np.tanh(x @ rng.normal(size=(p, p)) / np.sqrt(p)) + 0.1 * rng.normal(size=(n, p))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    linear_cka(xt[:500], yt[:500])  # warm-up
    # the fast variants interleaved, so a change in the machine's load hits each alike
    variants: dict[str, Callable[[], float]] = {
        "ours": lambda: linear_cka(xt, yt),
        "ours_float64": lambda: linear_cka(xt, yt, precision="float64"),
        "numpy_feature_space": lambda: feature_numpy_cka(x, y),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    values: dict[str, float] = {}
    for _ in range(reps):
        for name, fn in variants.items():
            _, t, values[name] = timed(fn, 1)
            times[name] += t
    naive_s, naive_all, naive_v = timed(lambda: naive_numpy_cka(x, y), 1)
    out: dict[str, Any] = {"examples": n, "features": p}
    for name, t in times.items():
        out[f"{name}_s"] = statistics.median(t)
        out[f"{name}_all_s"] = t
        out[f"{name}_value"] = values[name]
    ours_s = out["ours_s"]
    out.update({
        "naive_numpy_s": naive_s, "naive_numpy_all_s": naive_all, "naive_numpy_value": naive_v,
        "speedup_vs_naive": naive_s / ours_s,
        "speedup_vs_naive_best_of_ours": naive_s / min(times["ours"]),
        "speedup_float64_vs_naive": naive_s / out["ours_float64_s"],
        "speedup_vs_numpy_feature_space": out["numpy_feature_space_s"] / ours_s,
        "max_abs_diff_vs_naive": abs(values["ours"] - naive_v),
        "max_abs_diff_float64_vs_naive": abs(values["ours_float64"] - naive_v),
        "goal_speedup_vs_naive": 5.0,
    })
    return out


def bench_svcca(n: int, p: int, reps: int) -> dict[str, Any]:
    """SVCCA and PWCCA with torch's default threads, then SVCCA again with one thread."""
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(n, p)) @ rng.normal(size=(p, p)))
    y = torch.tanh(x @ torch.from_numpy(rng.normal(size=(p, p))) / p**0.5)
    svcca(x[:, :64], y[:, :64])  # warm-up
    threads = torch.get_num_threads()
    s, all_s, v = timed(lambda: svcca(x, y), reps)
    ps, pall, pv = timed(lambda: pwcca(x, y), reps)
    # CPU seconds of this process: close to an idle machine's wall time when one thread runs
    # (time-slicing by other jobs is not counted); with more threads it also counts spinning
    cpu = [_cpu_seconds(lambda: svcca(x, y)) for _ in range(reps)]
    torch.set_num_threads(1)
    try:
        s1, all1, _ = timed(lambda: svcca(x, y), reps)
        cpu1 = [_cpu_seconds(lambda: svcca(x, y)) for _ in range(reps)]
    finally:
        torch.set_num_threads(threads)
    return {"examples": n, "features": p, "threads": threads,
            "svcca_s": s, "svcca_all_s": all_s, "svcca_value": v,
            "svcca_cpu_s": statistics.median(cpu), "svcca_cpu_all_s": cpu,
            "svcca_1thread_s": s1, "svcca_1thread_all_s": all1,
            "svcca_1thread_cpu_s": statistics.median(cpu1),
            "pwcca_s": ps, "pwcca_all_s": pall, "pwcca_value": pv, "goal_s": 1.0}


def _cpu_seconds(fn: Callable[[], Any]) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


_CHILD = """
import sys, torch
from pruning_core.similarity import StreamingCKA, linear_cka
def status_kib(key):
    return int(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith(key)))
mode, n, p, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
g = torch.Generator().manual_seed(0)
w = torch.randn(p, p, generator=g, dtype=torch.float64) / p**0.5
def make(rows):
    x = torch.randn(rows, p, generator=g, dtype=torch.float64)
    return x, torch.tanh(x @ w)
make(batch)  # warm-up allocations
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = status_kib("VmRSS")
if mode == "streamed":
    acc = StreamingCKA()
    for _ in range(n // batch):
        acc.update(*make(batch))
    v = acc.value()
else:
    xs, ys = zip(*(make(batch) for _ in range(n // batch)))
    v = linear_cka(torch.cat(xs), torch.cat(ys))
print(before, status_kib("VmHWM"), v)
"""


def bench_memory(sizes: list[int], p: int, batch: int) -> dict[str, Any]:
    """Peak RSS (Linux VmHWM, reset after imports and warm-up) of a fresh process per
    (mode, examples); growth = peak - RSS at the start of the measured work."""
    rows = []
    for mode in ("streamed", "in_memory"):
        for n in sizes:
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, mode, str(n), str(p), str(batch)],
                capture_output=True, text=True, check=True, cwd=ROOT,
                env=child_env(),
            ).stdout.split()
            before, peak, value = int(out[0]), int(out[1]), float(out[2])
            rows.append({"mode": mode, "examples": n, "features": p, "batch": batch,
                         "rss_start_mib": before / 1024, "peak_rss_mib": peak / 1024,
                         "growth_mib": (peak - before) / 1024, "cka": value})
    return {"rows": rows, "data_bytes_per_example": 2 * p * 8}


def machine() -> dict[str, Any]:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name"))
    except (StopIteration, OSError):
        cpu = platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "numpy": np.__version__, "torch_threads": torch.get_num_threads(),
            "load_average_at_start": os.getloadavg(), "python": platform.python_version()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes (smoke test)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the fast variants")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--parts", default="abc", help="which parts to run, e.g. 'b' (default abc)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's own, one per core)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    q = args.quick
    info = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **machine()}
    print(f"{info['date']}  {info['cpu']}  cores={info['cores']}  torch {info['torch']}  "
          f"threads={info['torch_threads']}  load={info['load_average_at_start']}")
    result: dict[str, Any] = {"machine": info}
    if "a" in args.parts:
        result["cka"] = cka = bench_cka(1000 if q else 10_000, 256 if q else 4096, args.reps)
        print("\na. linear CKA, {examples:,} x {features:,} (float64)".format(**cka))
        print(f"  {'variant':<38}{'seconds':>10}{'ours faster by':>16}")
        print(f"  {'ours (linear_cka, auto precision)':<38}{cka['ours_s']:>10.2f}{'':>16}")
        print(f"  {'ours, precision=float64':<38}{cka['ours_float64_s']:>10.2f}"
              f"{cka['ours_float64_s'] / cka['ours_s']:>15.2f}x")
        print(f"  {'numpy, same feature-space formula':<38}{cka['numpy_feature_space_s']:>10.2f}"
              f"{cka['speedup_vs_numpy_feature_space']:>15.2f}x")
        print(f"  {'naive numpy (Grams + explicit H)':<38}{cka['naive_numpy_s']:>10.2f}"
              f"{cka['speedup_vs_naive']:>15.2f}x   (goal >= 5x)")
        print(f"  |ours - naive| = {cka['max_abs_diff_vs_naive']:.2e}, "
              f"|ours float64 - naive| = {cka['max_abs_diff_float64_vs_naive']:.2e}")
    if "b" in args.parts:
        result["svcca"] = sv = bench_svcca(2000, 64 if q else 512, max(args.reps, 5))
        print("\nb. SVCCA / PWCCA, {examples:,} x {features} (float64)".format(**sv))
        print(f"  {sv['threads']} threads: svcca {sv['svcca_s']:.3f} s wall, "
              f"{sv['svcca_cpu_s']:.3f} s CPU (goal <= 1 s)   pwcca {sv['pwcca_s']:.3f} s wall")
        print(f"  1 thread:  svcca {sv['svcca_1thread_s']:.3f} s wall, "
              f"{sv['svcca_1thread_cpu_s']:.3f} s CPU")
    if "c" in args.parts:
        result["memory"] = mem = bench_memory([2_000, 20_000] if q else [10_000, 100_000], 256,
                                              1000)
        print("\nc. peak RSS, CKA over 256 + 256 features, batches of 1,000 rows")
        print(f"  {'mode':<10}{'examples':>10}{'start MiB':>11}{'peak MiB':>10}{'growth':>9}")
        for r in mem["rows"]:
            print(f"  {r['mode']:<10}{r['examples']:>10,}{r['rss_start_mib']:>11.0f}"
                  f"{r['peak_rss_mib']:>10.0f}{r['growth_mib']:>9.0f}")
    out = args.out or RESULTS_DIR / ("similarity_quick.json" if q else "similarity.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result["load_average_at_end"] = os.getloadavg()
    result["max_rss_parent_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
