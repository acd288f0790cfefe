"""What a pack member costs besides its training, with and without the reuse of measurements
(the FLOP counting pass per structure, the connectivity memo) and batched scoring.

    python benchmarks/bench_member_costs.py                  # cnn1d, K = 32, CPU
    python benchmarks/bench_member_costs.py --workload mlp --k 64 --epochs 1
    python benchmarks/bench_member_costs.py --device cuda --k 128

Each mode runs the same pack (``run_pack(batched=True)``, members as ``bench_packing.py``
makes them) in its own process, ``--reps`` times; the best time is kept. Modes:

- ``now``: as shipped;
- ``no-reuse``: every FLOP count runs its own counting pass and every connectivity question
  its own probe (as before the reuse);
- ``no-batched-scoring``: every member scores alone (as before batched scoring);
- ``batched-scoring-on-cpu``: SNIP and SynFlow batched on CPU too (by default only on CUDA,
  ``scoring.DEVICES``).

Prints a table, writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODES = ("now", "no-reuse", "no-batched-scoring", "batched-scoring-on-cpu")


def _disable(mode: str) -> None:
    """Switch one improvement off in this (child) process."""
    if mode == "no-reuse":
        from pruning_core.measure import effective, metrics
        from pruning_core.trials import trial

        metrics._COUNTS_KEPT = 0  # every count is evicted at once: one pass per call

        class NoMemo:
            def __call__(self, model: Any, masks: Any, input_shape: Any) -> Any:
                return effective.connectivity(model, masks, input_shape)

        trial.ConnectivityMemo = NoMemo  # type: ignore[misc,assignment]
    elif mode == "no-batched-scoring":
        from pruning_core.packing import scoring

        scoring.BATCHED._items.clear()
    elif mode == "batched-scoring-on-cpu":
        from pruning_core.packing import scoring

        scoring.DEVICES = {"cpu", "cuda"}


def one(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_packing import member_configs

    from pruning_core.packing import run_pack
    from pruning_core.trials.experiment import run

    torch.set_num_threads(args.threads)
    _disable(mode)
    ns = argparse.Namespace(batch=args.batch, train_examples=args.train_examples,
                            test_examples=args.test_examples, epochs=args.epochs,
                            device=args.device, threads=args.threads,
                            resnet_batch=args.batch, resnet_examples=args.train_examples)
    cfgs = member_configs(args.workload, args.k, ns)
    run(cfgs[0].model_copy(update={"train": cfgs[0].train.model_copy(update={"epochs": 0})}))
    best = float("inf")
    statuses: set[str] = set()
    for _ in range(args.reps):
        start = time.perf_counter()
        results = run_pack(cfgs, batched=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
        statuses |= {r.status for r in results}
    return {"mode": mode, "k": args.k, "pack_s": best, "ms_per_member": 1e3 * best / args.k,
            "statuses": sorted(statuses)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", default="cnn1d", choices=["cnn1d", "mlp", "resnet20"])
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--train-examples", type=int, default=512)
    ap.add_argument("--test-examples", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2,
                    help="processes per mode, interleaved (A B C A B C); the best is kept "
                         "(the first process of a run was measured up to 25%% slower)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON path (default results/member_costs_<workload>.json)")
    args = ap.parse_args()
    if args.out is None:
        args.out = Path(__file__).parent / "results" / f"member_costs_{args.workload}.json"
    if args.one:
        print(json.dumps(one(args.one, args)))
        return
    argv = sys.argv[1:]
    best: dict[str, dict[str, Any]] = {}
    print(f"{args.workload} K={args.k} epochs={args.epochs} device={args.device}", flush=True)
    for r in range(args.rounds):
        for mode in args.modes:
            out = subprocess.run([sys.executable, __file__, *argv, "--one", mode],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"round {r + 1} {mode:>22}: pack {row['pack_s']:.3f} s", flush=True)
            if mode not in best or row["pack_s"] < best[mode]["pack_s"]:
                best[mode] = row
    rows = [best[m] for m in args.modes]
    for row in rows:
        print(f"{row['mode']:>22}: pack {row['pack_s']:.3f} s, {row['ms_per_member']:.1f} ms "
              f"per member, statuses {row['statuses']}", flush=True)
    now = rows[0]["pack_s"] if rows[0]["mode"] == "now" else None
    for row in rows:
        if now:
            row["vs_now"] = row["pack_s"] / now
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                    "date": time.strftime("%Y-%m-%d"), "rows": rows},
                                   indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
