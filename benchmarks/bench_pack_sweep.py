"""Packed against unpacked sweeps, end to end (issue 20, item 4): the demo space
(``search_spaces/demo_mnist1d.yaml``) run through ``run_sweep`` with ``budget.pack`` 1 (one
sampled config per Ray trial, today's default) and 2 / 4 / 8 / auto, in the same script run;
wall clock from ``run_sweep``'s call to its return (Ray start, workers, data, W&B offline runs,
Parquet rows, the end-of-sweep front), trials per hour, the load average before and after.

The demo space is changed in three ways, the same for every mode, and the JSON says so:

- ``--trials`` sampled configs (default 64) instead of 16;
- ``--epochs`` training epochs (default 2) instead of 40, so that five sweeps fit on a shared
  2-core machine;
- no ``scheduler:`` (``--keep-scheduler`` keeps the demo's, which a packed sweep applies per
  member, docs/sweeps.md "Packs"); every mode runs every trial's whole plan.

Each mode runs in its own process (a fresh Ray), W&B offline as the demo does, results in a
temporary directory that is deleted afterwards.

    python benchmarks/bench_pack_sweep.py                       # 64 trials, 2 epochs, 5 modes
    python benchmarks/bench_pack_sweep.py --trials 16 --packs 1 4 --epochs 1
    python benchmarks/bench_pack_sweep.py --trials 16 --epochs 40 --keep-scheduler  # the demo

Writes ``benchmarks/results/pack_sweep_cpu.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from child_env import child_env

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "search_spaces" / "demo_mnist1d.yaml"


def space_dict(pack: str, args: argparse.Namespace, storage: str) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(DEMO.read_text())
    if not args.keep_scheduler:
        data.pop("scheduler", None)
    data["budget"] = {**data["budget"], "num_samples": args.trials,
                      "pack": pack if pack == "auto" else int(pack)}
    data["fixed"]["train"] = {**data["fixed"]["train"], "epochs": args.epochs}
    if args.train_limit:
        data["fixed"]["data"] = {**data["fixed"]["data"], "train_limit": args.train_limit}
    if args.wandb != "offline":
        data["wandb"] = {**data["wandb"], "mode": args.wandb}
    data["name"] = f"demo_pack_{pack}"
    data["storage"] = str(Path(storage, data["name"]))
    return data


def one(pack: str, args: argparse.Namespace) -> dict[str, Any]:
    """One sweep, in this (child) process."""
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import pandas as pd  # noqa: F401  (imported before the clock starts, as the CLI does)

    from sweeps.results.store import TrialStore
    from sweeps.tune.launch import run_sweep
    from sweeps.tune.space import parse_space

    with tempfile.TemporaryDirectory() as tmp:
        space = parse_space(space_dict(pack, args, tmp))
        start = time.perf_counter()
        out = run_sweep(space, num_cpus=args.num_cpus)
        wall = time.perf_counter() - start
        df = TrialStore(out.results_dir).dataframe()
    statuses = df["status"].value_counts().to_dict()
    return {"pack": pack, "wall_s": wall, "rows": int(out.rows), "complete": bool(out.complete),
            "statuses": {str(k): int(v) for k, v in statuses.items()},
            "trials_per_hour": 3600 * out.rows / wall,
            "best_test_accuracy": float(df["test_accuracy"].max())}


def _child(pack: str, argv: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, __file__, *argv, "--one", pack]
    env = child_env()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=7200)
    if p.returncode != 0:
        return {"pack": pack, "error": p.stderr[-2000:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-limit", type=int, default=0, help="0: the whole MNIST-1D split")
    ap.add_argument("--packs", nargs="*", default=["1", "2", "4", "8", "auto"])
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--wandb", default="offline", choices=["offline", "disabled"],
                    help="the demo's W&B mode (offline) or none")
    ap.add_argument("--out", default=str(RESULTS_DIR / "pack_sweep_cpu.json"))
    ap.add_argument("--keep-scheduler", action="store_true",
                    help="keep the demo's early stopping (decided per member in packs)")
    ap.add_argument("--one", metavar="PACK")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args)))
        return
    argv = [a for a in sys.argv[1:]]
    rows = []
    base = None
    for pack in args.packs:
        load_before = os.getloadavg()
        row = _child(pack, argv)
        row["load_before"] = load_before
        row["load_after"] = os.getloadavg()
        if pack == "1" and "error" not in row:
            base = row
        if base is not None and "error" not in row:
            row["speedup"] = row["trials_per_hour"] / base["trials_per_hour"]
        rows.append(row)
        _print_row(row)
    payload = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
               "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
               "space": str(DEMO.relative_to(ROOT)),
               "changes": {"num_samples": args.trials, "train.epochs": args.epochs,
                           "scheduler": "kept" if args.keep_scheduler else None,
                           "data.train_limit": args.train_limit or None,
                           "wandb.mode": args.wandb},
               "args": vars(args), "rows": rows}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
    print(f"{payload['uptime']}\nwrote {path}")


def _print_row(row: dict[str, Any]) -> None:
    load = f"load {row['load_before'][0]:.1f}->{row['load_after'][0]:.1f}"
    if "error" in row:
        print(f"pack {row['pack']:>4s}  error: {row['error'][-400:]}  ({load})", flush=True)
        return
    sp = f"x{row['speedup']:.2f}" if "speedup" in row else ""
    print(f"pack {row['pack']:>4s}  {row['rows']:3d} rows  {row['wall_s']:7.1f} s  "
          f"{row['trials_per_hour']:8.0f} trials/h  {sp:6s} statuses {row['statuses']}  "
          f"best acc {row['best_test_accuracy']:.3f}  ({load})", flush=True)


if __name__ == "__main__":
    main()
