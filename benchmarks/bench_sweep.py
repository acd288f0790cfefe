"""Sweep platform overhead vs bare Ray Tune + OptunaSearch (same no-op work, one run), and
Optuna sampler cost at many trials.

    python benchmarks/bench_sweep.py --trials 200          # overhead, 2 CPUs
    python benchmarks/bench_sweep.py --sampler-trials 1000 # sampler cost only (--trials 0)
    python benchmarks/bench_sweep.py --trials 100 --pack 8 # also per member in packs of 8
    python benchmarks/bench_sweep.py --trials 100 300      # also the marginal cost per trial
    python benchmarks/bench_sweep.py --trials 100 --bare-torch  # also bare with `import torch`
    python benchmarks/bench_sweep.py --trials 100 --rounds 3    # each mode 3x, interleaved: medians

Bare: the baseline of /work/shared/baselines/sweep_overhead.py with actor reuse (a trainable that
reports once). Ours: ``run_sweep`` on the same kind of no-op trial (``run_fn`` returns at once;
one final report), with our define-by-run space, Recorder writing one Parquet file per trial.
``--wandb`` also times ours with W&B offline (the default): each trial's live run opened and
finished in its Ray worker, then the driver's end-of-sweep Pareto flags and summary run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("WANDB_SILENT", "true")

SPACE = {
    "name": "bench",
    "objectives": [{"metric": "test_accuracy", "mode": "max"},
                   {"metric": "sparsity", "mode": "max"}],
    "fixed": {"model": {"name": "mlp"}, "data": {"name": "digits"}, "train": {"epochs": 1}},
    "params": {
        "prune.criterion": {"type": "choice", "values": ["snip", "synflow", "magnitude"]},
        "prune.sparsity": {"type": "float", "low": 0.0, "high": 0.99},
    },
}


def noop_run(cfg: Any, on_epoch: Any = None, resume: Any = None) -> Any:
    """A no-op 'experiment': the result of a trial that did no work."""
    s = cfg.prune.sparsity
    metrics = {"status": "ok", "test_accuracy": 1 - s, "sparsity": s}
    return SimpleNamespace(metrics=lambda: metrics, history=[], status="ok", error=None,
                           diverged_epoch=None, collapsed_layers=[], layer_sparsity={},
                           similarity={}, similarity_mean=None, layer_effective_sparsity={})


def bare(n: int, storage: str, torch_trainable: bool = False) -> float:
    """``torch_trainable``: the trainable imports torch, as a PyTorch trainable does (each Ray
    worker pays the import once, on its first trial, as ours does)."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    def trainable(config: dict) -> None:
        if torch_trainable:
            import torch  # noqa: F401
        tune.report({"acc": config["x"], "sparsity": 1 - config["x"]})

    t0 = time.perf_counter()
    tuner = tune.Tuner(
        trainable,
        param_space={"x": tune.uniform(0, 1), "c": tune.choice(["snip", "synflow", "mag"])},
        tune_config=tune.TuneConfig(search_alg=OptunaSearch(metric=["acc", "sparsity"],
                                                            mode=["max", "max"]),
                                    num_samples=n, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, verbose=0,
                                  name="bare-torch" if torch_trainable else "bare"))
    tuner.fit()
    return (time.perf_counter() - t0) / n


def ours(n: int, storage: str, wandb_mode: str, pack: int = 1) -> float:
    """Seconds per sampled config (per pack member with ``pack`` > 1)."""
    from sweeps.tune.launch import run_sweep
    from sweeps.tune.space import parse_space

    budget: dict[str, Any] = {"num_samples": n} | ({"pack": pack} if pack > 1 else {})
    name = f"ours-{wandb_mode}" + (f"-pack{pack}" if pack > 1 else "")
    space = parse_space({**SPACE, "name": name, "budget": budget,
                         "storage": f"{storage}/{name}", "wandb": {"mode": wandb_mode}})
    t0 = time.perf_counter()
    out = run_sweep(space, run_fn=noop_run)
    dt = (time.perf_counter() - t0) / n
    assert out.rows == n and out.counts == {"ok": n}, out  # a failing no-op times retries
    return dt


def sampler_cost(n: int) -> dict[str, dict[str, float]]:
    import optuna

    from sweeps.tune.space import parse_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    demo = {**SPACE, "params": {**SPACE["params"],
                                "prune.steps": {"type": "int", "low": 1, "high": 5},
                                "train.lr": {"type": "float", "low": 1e-4, "high": 1e-1,
                                             "log": True}}}
    out: dict[str, dict[str, float]] = {}
    for name in ("random", "nsga2", "tpe"):
        space = parse_space({**demo, "sampler": {"name": name, "seed": 0}})
        fn = space.define_by_run()
        study = optuna.create_study(directions=["maximize", "maximize"],
                                    sampler=space.make_sampler())
        t0 = time.perf_counter()
        last = t0
        for i in range(n):
            if i == n - 100:
                last = time.perf_counter()
            trial = study.ask()
            fn(trial)
            x = trial.params["prune/sparsity"]
            study.tell(trial, [1 - x, x])
        total = time.perf_counter() - t0
        tail = (time.perf_counter() - last) / 100
        print(f"sampler={name} objectives=2 trials={n} mean_s_per_trial={total / n:.4f} "
              f"last100_s_per_trial={tail:.4f}", flush=True)
        out[name] = {"trials": n, "mean_s_per_trial": total / n, "last100_s_per_trial": tail}
    return out


def one_count(n: int, storage: str, args: argparse.Namespace) -> dict[str, float]:
    """Seconds per trial of each mode at ``n`` trials (one Ray, modes in turn); with
    ``--rounds R``, every mode R times, the modes interleaved (round r runs them in order r
    positions on), and each mode's median."""
    modes: dict[str, Any] = {
        "bare_reuse_s_per_trial": lambda d: bare(n, d),
        "ours_s_per_trial": lambda d: ours(n, d, "disabled")}
    if args.bare_torch:
        modes["bare_torch_reuse_s_per_trial"] = lambda d: bare(n, d, torch_trainable=True)
    if args.wandb:
        modes["ours_wandb_offline_s_per_trial"] = lambda d: ours(n, d, "offline")
    if args.pack > 1:
        modes[f"ours_pack{args.pack}_s_per_member"] = lambda d: ours(n, d, "disabled", args.pack)
    names = list(modes)
    seen: dict[str, list[float]] = {k: [] for k in names}
    for r in range(args.rounds):
        d = f"{storage}/round{r}"
        Path(d).mkdir(parents=True)
        for k in names[r % len(names):] + names[:r % len(names)]:
            seen[k].append(modes[k](d))
        if args.rounds > 1:
            print(f"round {r + 1}/{args.rounds}: " + " ".join(
                f"{k}={v[-1]:.3f}" for k, v in seen.items()), flush=True)
    out = {k: statistics.median(v) for k, v in seen.items()}
    if args.rounds > 1:
        out.update({f"{k}_rounds": v for k, v in seen.items()})  # type: ignore[misc]
    ours_s = out["ours_s_per_trial"]
    vs_torch = (f" ratio_vs_bare_torch={ours_s / out['bare_torch_reuse_s_per_trial']:.2f}"
                if args.bare_torch else "")
    print(f"trials={n} cpus={args.cpus} " + " ".join(f"{k}={v:.3f}" for k, v in out.items()
                                                    if not k.endswith("_rounds"))
          + f" ratio={ours_s / out['bare_reuse_s_per_trial']:.2f}" + vs_torch, flush=True)
    return out


def marginal(runs: dict[int, dict[str, float]]) -> dict[str, float]:
    """Per mode, the seconds one more trial costs between the smallest and largest count:
    ``(T(b) - T(a)) / (b - a)``; what a sweep pays once (Ray's workers starting, their torch
    import, the end-of-sweep compaction) cancels out."""
    a, b = min(runs), max(runs)
    out = {k: (runs[b][k] * b - runs[a][k] * a) / (b - a) for k in runs[a]
           if not k.endswith("_rounds")}
    out["ratio"] = out["ours_s_per_trial"] / out["bare_reuse_s_per_trial"]
    if "bare_torch_reuse_s_per_trial" in out:
        out["ratio_vs_bare_torch"] = out["ours_s_per_trial"] / out["bare_torch_reuse_s_per_trial"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, nargs="+", default=[200],
                    help="trial counts; two or more also give the marginal cost per trial")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--sampler-trials", type=int, default=1000)
    ap.add_argument("--wandb", action="store_true",
                    help="also time ours with W&B offline (live runs in the workers)")
    ap.add_argument("--bare-torch", action="store_true",
                    help="also time bare Ray Tune with a trainable that imports torch (as a "
                         "PyTorch trainable does, and ours does: the import is paid once per "
                         "Ray worker)")
    ap.add_argument("--pack", type=int, default=1,
                    help="also time ours with budget.pack: PACK (W&B off), per member")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every mode this many times, interleaved, and report medians")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sweep.json"))
    args = ap.parse_args()
    report: dict[str, object] = {"date": time.strftime("%Y-%m-%d"), "cpus": args.cpus,
                                 "cpu_count": os.cpu_count()}
    args.trials = [n for n in args.trials if n > 0]
    if args.trials:
        import ray

        from sweeps.tune.launch import init_ray

        init_ray(None, num_cpus=args.cpus)
        runs: dict[int, dict[str, float]] = {}
        with tempfile.TemporaryDirectory() as storage:
            for n in args.trials:
                runs[n] = one_count(n, f"{storage}/{n}", args)
        ray.shutdown()
        first = runs[args.trials[0]]
        report.update(trials=args.trials[0], **first,
                      ratio=first["ours_s_per_trial"] / first["bare_reuse_s_per_trial"],
                      counts={str(n): r for n, r in runs.items()})
        if len(args.trials) > 1:
            report["marginal"] = marginal(runs)
            print("marginal s per extra trial (fixed costs cancel): " + " ".join(
                f"{k}={v:.4f}" for k, v in report["marginal"].items()), flush=True)
    if args.sampler_trials:
        report["samplers"] = sampler_cost(args.sampler_trials)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
