"""What the doomed-trial screen saves (issue 18): the same configs run screened and unscreened,
in one process, one after the other; CPU seconds spent, trials ended before training, and the
accuracy-sparsity front of the trials above chance, which must be the same.

Two config sets:
- ``demo``: ``--samples`` configs drawn from ``search_spaces/demo_mnist1d.yaml`` (random draws
  plus every choice value and range end, as ``prunetune validate`` draws them);
- ``table``: the MNIST-1D table's methods (benchmarks/RESULTS.md, ``accuracy_mnist1d.py``):
  magnitude, random, snip, snip-it, grasp, synflow at 0.9 / 0.95 / 0.98, seed 0.

    python benchmarks/bench_screen.py --epochs 40     # both sets (the demo space trains 40)
    python benchmarks/bench_screen.py --quick         # 4 demo configs, 1 epoch (smoke test)

Training is shortened (``--epochs``) for both arms alike: a doomed trial costs its whole plan
unscreened, so the saving grows with the real epoch count (the ratio stays).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from pruning_core.config import TrialConfig
from pruning_core.trials.experiment import run
from pruning_core.trials.registries import load_trial_config
from sweeps.results.pareto import pareto_front
from sweeps.tune.space import load_space

REPO = Path(__file__).resolve().parents[1]
CHANCE = 0.1 + 0.02  # MNIST-1D: 10 classes, the CLI's chance rule


def demo_configs(samples: int, epochs: int) -> list[TrialConfig]:
    space = load_space(REPO / "search_spaces" / "demo_mnist1d.yaml")
    out = []
    for sampled in space.sample(samples, seed=0)[:samples]:
        data = space.trial_config(sampled).model_dump()
        data["train"]["epochs"] = epochs
        out.append(load_trial_config(data))
    return out


def table_configs(epochs: int) -> list[TrialConfig]:
    """The MNIST-1D table's rows at seed 0 (``accuracy_mnist1d.trial_config``: SNIP-it 5
    steps, SynFlow 100 steps, 4 scoring batches, global, before training)."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from accuracy_mnist1d import DEFAULT_METHODS, trial_config

    return [load_trial_config(trial_config(m, s, 0, epochs))
            for m in DEFAULT_METHODS for s in (0.9, 0.95, 0.98)]


def one(cfg: TrialConfig, screen: bool) -> dict[str, Any]:
    data = cfg.model_dump()
    data["prune"]["screen"]["enabled"] = screen
    cfg = load_trial_config(data)
    start = time.process_time()
    res = run(cfg)
    return {"criterion": cfg.prune.criterion, "target": cfg.prune.sparsity,
            "timing": cfg.prune.timing.name, "status": res.status,
            "test_accuracy": res.test_accuracy, "sparsity": res.sparsity,
            "cpu_s": time.process_time() - start}


def front(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    import pandas as pd

    df = pd.DataFrame([r for r in rows if r["status"] == "ok" and r["test_accuracy"] > CHANCE])
    if df.empty:
        return []
    f = pareto_front(df, ["test_accuracy:max", "sparsity:max"])
    return sorted((round(a, 6), round(s, 6)) for a, s in zip(f["test_accuracy"], f["sparsity"],
                                                             strict=True))


def compare(name: str, configs: list[TrialConfig]) -> dict[str, Any]:
    one(configs[0], True)  # warm-up: the dataset is generated and cached by the first run
    screened = [one(c, True) for c in configs]
    plain = [one(c, False) for c in configs]
    cpu_on, cpu_off = sum(r["cpu_s"] for r in screened), sum(r["cpu_s"] for r in plain)
    doomed = [r for r in screened if r["status"] == "doomed"]
    return {"set": name, "configs": len(configs), "doomed": len(doomed),
            "doomed_configs": [(r["criterion"], r["target"]) for r in doomed],
            "cpu_s_screened": round(cpu_on, 1), "cpu_s_unscreened": round(cpu_off, 1),
            "saved": round(1 - cpu_on / cpu_off, 4) if cpu_off else 0.0,
            "front_unchanged": front(screened) == front(plain),
            "unscreened_doomed_accuracy": [round(p["test_accuracy"], 4) for s, p in
                                           zip(screened, plain, strict=True)
                                           if s["status"] == "doomed"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "screen.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        sets = [("demo", demo_configs(4, 1))]
    else:
        sets = [("demo", demo_configs(args.samples, args.epochs)),
                ("table", table_configs(args.epochs))]
    results = [compare(name, cfgs) for name, cfgs in sets]
    print(f"{'set':6} {'configs':>7} {'doomed':>6} {'cpu s screened':>15} "
          f"{'cpu s unscreened':>17} {'saved':>6} {'front unchanged':>16}")
    for r in results:
        print(f"{r['set']:6} {r['configs']:7d} {r['doomed']:6d} {r['cpu_s_screened']:15.1f} "
              f"{r['cpu_s_unscreened']:17.1f} {r['saved']:6.1%} {r['front_unchanged']!s:>16}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "date": dt.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__, "epochs": 1 if args.quick else args.epochs,
        "results": results}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
