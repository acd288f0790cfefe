"""Warm start from an earlier sweep's front: real Ray, real Optuna, real Parquet."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweeps.launch import _search, run_sweep
from sweeps.pareto import load_results, pareto_front
from sweeps.space import parse_space
from sweeps.warm_start import add_to_search, seed_points

pytestmark = pytest.mark.slow

FIXED = {"model": {"name": "mlp", "options": {"hidden": [32, 16]}},
         "data": {"name": "digits", "train_limit": 400, "test_limit": 200},
         "train": {"epochs": 2, "optimizer": "adam", "lr": 0.01, "device": "cpu"},
         "prune": {"criterion": "snip"}}
PARAMS = {"prune.sparsity": {"type": "float", "low": 0.3, "high": 0.97},
          "prune.allocation": {"type": "choice", "values": ["global", "uniform", "erk"]},
          "prune.schedule": {"type": "choice", "values": ["one_shot", "snip_it"]},
          "prune.steps": {"type": "int", "low": 2, "high": 4,
                          "when": {"prune.schedule": "snip_it"}}}


def space(tmp: Path, name: str, n: int, sampler: str = "random") -> object:
    return parse_space({
        "name": name, "objectives": [{"metric": "test_accuracy", "mode": "max"},
                                     {"metric": "sparsity", "mode": "max"}],
        "sampler": {"name": sampler, "seed": 1}, "budget": {"num_samples": n,
                                                             "max_concurrent": 2},
        "fixed": FIXED, "params": PARAMS, "storage": str(tmp / name),
        "wandb": {"mode": "disabled"}})


def test_warm_start_seeds_the_study_with_the_earlier_front(tmp_path: Path,
                                                            ray_local: None) -> None:
    first = run_sweep(space(tmp_path, "first", 6))
    assert first.rows == 6
    df = load_results(first.results_dir)
    front = pareto_front(df, ["test_accuracy:max", "sparsity:max"])
    assert len(front) >= 1

    follow = space(tmp_path, "second", 3, sampler="nsga2")
    points = seed_points(follow, [first.results_dir])
    assert sorted(p.trial_id for p in points) == sorted(front["trial_id"])
    for p in points:
        row = front.set_index("trial_id").loc[p.trial_id]
        assert p.values == [row["test_accuracy"], row["sparsity"]]
        assert p.params["prune/sparsity"] == pytest.approx(row["config.prune.sparsity"])
        assert p.params["prune/allocation/name"] == row["config.prune.allocation.name"]
        # conditional params come back only where the earlier trial had them
        assert ("prune/steps" in p.params) == (row["config.prune.schedule"] == "snip_it")

    search = _search(follow)
    assert add_to_search(search, points) == len(points)
    trials = search.searcher._ot_study.trials if hasattr(search, "searcher") else \
        search._ot_study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * len(points)
    assert sorted(t.values for t in trials) == sorted(p.values for p in points)

    second = run_sweep(follow, warm_start=[first.results_dir])
    assert second.warm_started == len(points) and second.rows == 3  # seeds are not re-run


def test_warm_start_from_results_without_the_objective(tmp_path: Path) -> None:
    from pruning_core.errors import ConfigError
    from sweeps.store import TrialStore

    TrialStore(str(tmp_path / "old")).write({"trial_id": "t0", "status": "ok",
                                             "test_accuracy": 0.5})
    with pytest.raises(ConfigError, match="no column 'sparsity'"):
        seed_points(space(tmp_path, "x", 2), [str(tmp_path / "old")])
