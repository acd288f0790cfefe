"""The driver's searcher cost per trial at 1,000 and 10,000 trials: Optuna ask/tell only.

    .venv/bin/python benchmarks/bench_searcher.py [--sizes 1000 10000] [--asks 30]

The search space is the demo's (benchmarks use search_spaces/demo_mnist1d.yaml's shape: five
criteria, a conditional GraSP temperature, sparsity, three schedules with conditional steps,
three allocations, two timings), asked define-by-run as OptunaSearch does, with 2 objectives
(test accuracy max, sparsity max) from a cheap synthetic function. No Ray, no training.

* NSGA-II: a real sequential run of ask/tell up to the largest size (its generations need the
  trials it asked itself); cost = mean ask+tell time of the 100 trials before each size.
* TPE (multi-objective, Optuna's default for 2 objectives) and TPE with one objective: a full
  run to 10,000 would take hours of the driver (the cost grows with the history), so the study
  is pre-filled with N completed trials (``study.add_trials``) and ``--asks`` ask/tell pairs are
  timed at that size; at 1,000 a full run is timed too, to check the two methods agree.

Prints a table and writes benchmarks/results/searcher.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState, create_trial

CRITERIA = ["magnitude", "snip", "synflow", "grasp", "random"]
SCHEDULES = ["one_shot", "exponential", "snip_it"]
ALLOCATIONS = ["global", "uniform", "erk"]
TIMINGS = ["before", "during"]


def suggest(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    """The demo space, define-by-run (conditionals as ``when:`` compiles them)."""
    p: dict[str, Any] = {"criterion": trial.suggest_categorical("criterion", CRITERIA)}
    if p["criterion"] == "grasp":
        p["temperature"] = trial.suggest_float("temperature", 50, 500, log=True)
    p["sparsity"] = trial.suggest_float("sparsity", 0.5, 0.98)
    p["schedule"] = trial.suggest_categorical("schedule", SCHEDULES)
    if p["schedule"] != "one_shot":
        p["steps"] = trial.suggest_int("steps", 2, 5)
    p["allocation"] = trial.suggest_categorical("allocation", ALLOCATIONS)
    p["timing"] = trial.suggest_categorical("timing", TIMINGS)
    return p


def objectives(p: dict[str, Any], rng: random.Random) -> list[float]:
    """A synthetic accuracy that falls with sparsity, better for some criteria; + noise."""
    bonus = {"snip": 0.02, "synflow": 0.03, "grasp": 0.01}.get(p["criterion"], 0.0)
    acc = 0.95 - 0.6 * p["sparsity"] ** 6 + bonus + rng.gauss(0, 0.01)
    return [acc, p["sparsity"]]


def random_trial(rng: random.Random, n_obj: int) -> optuna.trial.FrozenTrial:
    params: dict[str, Any] = {}
    dists: dict[str, Any] = {}

    def cat(name: str, choices: list[str]) -> str:
        params[name] = rng.choice(choices)
        dists[name] = CategoricalDistribution(choices)
        return params[name]

    if cat("criterion", CRITERIA) == "grasp":
        params["temperature"] = math.exp(rng.uniform(math.log(50), math.log(500)))
        dists["temperature"] = FloatDistribution(50, 500, log=True)
    params["sparsity"] = rng.uniform(0.5, 0.98)
    dists["sparsity"] = FloatDistribution(0.5, 0.98)
    if cat("schedule", SCHEDULES) != "one_shot":
        params["steps"] = rng.randint(2, 5)
        dists["steps"] = IntDistribution(2, 5)
    cat("allocation", ALLOCATIONS)
    cat("timing", TIMINGS)
    values = objectives(params, rng)[:n_obj]
    return create_trial(params=params, distributions=dists, values=values,
                        state=TrialState.COMPLETE)


def make_study(sampler: str, n_obj: int, seed: int = 0) -> optuna.Study:
    samplers = {"nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
                "tpe": lambda: optuna.samplers.TPESampler(seed=seed)}
    directions = ["maximize", "maximize"][:n_obj]
    return optuna.create_study(directions=directions, sampler=samplers[sampler]())


def ask_tell(study: optuna.Study, rng: random.Random, n_obj: int) -> float:
    t0 = time.perf_counter()
    trial = study.ask()
    values = objectives(suggest(trial), rng)[:n_obj]
    study.tell(trial, values if n_obj > 1 else values[0])
    return time.perf_counter() - t0


def full_run(sampler: str, n_obj: int, sizes: list[int]) -> dict[int, dict[str, float]]:
    """Sequential ask/tell to max(sizes); per size: mean/median of the 100 trials before it."""
    study, rng = make_study(sampler, n_obj), random.Random(1)
    times = [ask_tell(study, rng, n_obj) for _ in range(max(sizes))]
    out = {}
    for n in sizes:
        window = times[n - 100:n]
        out[n] = {"mean_s": statistics.fmean(window), "median_s": statistics.median(window),
                  "cumulative_s": sum(times[:n])}
    return out


def prefilled(sampler: str, n_obj: int, n: int, asks: int) -> dict[str, float]:
    study, rng = make_study(sampler, n_obj), random.Random(2)
    study.add_trials([random_trial(rng, n_obj) for _ in range(n)])
    times = [ask_tell(study, rng, n_obj) for _ in range(asks)]
    return {"mean_s": statistics.fmean(times), "median_s": statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--asks", type=int, default=30, help="timed asks at each pre-filled size")
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).parent / "results" / "searcher.json")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sizes = sorted(args.sizes)
    rows: list[dict[str, Any]] = []
    started, load_start = time.time(), os.getloadavg()

    for n, r in full_run("nsga2", 2, sizes).items():
        rows.append({"sampler": "NSGA-II", "objectives": 2, "trials": n, "method": "full run",
                     **r})
    for n_obj, name in ((2, "TPE (multi-objective)"), (1, "TPE")):
        first = sizes[0]
        r = full_run("tpe", n_obj, [first])[first]
        rows.append({"sampler": name, "objectives": n_obj, "trials": first,
                     "method": "full run", **r})
        for n in sizes:
            rows.append({"sampler": name, "objectives": n_obj, "trials": n,
                         "method": f"pre-filled, {args.asks} asks",
                         **prefilled("tpe", n_obj, n, args.asks)})

    print(f"{'sampler':24} {'obj':>3} {'trials':>7}  {'method':22} {'mean ms':>9} "
          f"{'median ms':>9} {'cumulative s':>12}")
    for r in rows:
        cum = f"{r['cumulative_s']:.1f}" if "cumulative_s" in r else "-"
        print(f"{r['sampler']:24} {r['objectives']:>3} {r['trials']:>7}  {r['method']:22} "
              f"{1000 * r['mean_s']:>9.2f} {1000 * r['median_s']:>9.2f} {cum:>12}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "searcher", "optuna": optuna.__version__, "python": platform.python_version(),
        "cpus": os.cpu_count(), "load_avg_start_end": [load_start[0], os.getloadavg()[0]],
        "wall_s": time.time() - started,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
