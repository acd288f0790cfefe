"""Warm start from an earlier sweep's front: real Ray, real Optuna, real Parquet."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweeps.results.store import TrialStore
from sweeps.tune.launch import _search, run_sweep
from sweeps.tune.space import parse_space
from sweeps.tune.study import new_study, open_storage, study_location
from sweeps.tune.warm_start import add_to_study, in_distribution, seed_points

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


def space(tmp: Path, name: str, n: int, sampler: str = "random",
          options: dict | None = None) -> object:
    return parse_space({
        "name": name, "objectives": [{"metric": "test_accuracy", "mode": "max"},
                                     {"metric": "sparsity", "mode": "max"}],
        "sampler": {"name": sampler, "seed": 1, "options": options or {}},
        "budget": {"num_samples": n, "max_concurrent": 2},
        "fixed": FIXED, "params": PARAMS, "storage": str(tmp / name),
        "wandb": {"mode": "disabled"}})


def hand_front(rows: list[dict]) -> list[dict]:
    """Completed rows no other completed row dominates (both objectives maximised)."""
    ok = [r for r in rows if r["status"] == "ok"]

    def dominates(a: dict, b: dict) -> bool:
        ge = a["test_accuracy"] >= b["test_accuracy"] and a["sparsity"] >= b["sparsity"]
        return ge and (a["test_accuracy"] > b["test_accuracy"] or a["sparsity"] > b["sparsity"])

    return [r for r in ok if not any(dominates(o, r) for o in ok)]


def test_warm_start_seeds_the_study_with_the_earlier_front(tmp_path: Path,
                                                            ray_local: None) -> None:
    first = run_sweep(space(tmp_path, "first", 6))
    assert first.rows == 6
    # the earlier front, read from the Parquet rows and computed here by hand
    rows = {r["trial_id"]: r for r in TrialStore(first.results_dir).dataframe()
            .to_dict("records")}
    front = {r["trial_id"]: r for r in hand_front(list(rows.values()))}
    assert len(front) >= 2  # seed 1: a front to breed from (a single point would not test it)

    # NSGA-II with a population the size of the front: the seeds are all of generation 0
    follow = space(tmp_path, "second", 3, sampler="nsga2",
                   options={"population_size": len(front)})
    points = seed_points(follow, [first.results_dir])
    assert sorted(p.trial_id for p in points) == sorted(front)

    # the study in its own storage (a scratch journal here: run_sweep makes the real one)
    scratch = follow.model_copy(update={"study": follow.study.model_copy(
        update={"storage": str(tmp_path / "scratch.log")})})
    storage, sampler = open_storage(scratch), follow.make_sampler()
    study = new_study(scratch, storage, sampler)
    assert add_to_study(study, points) == len(points)
    search = _search(scratch, storage, sampler)  # Ray's OptunaSearch loads the seeded study
    seeded = study.get_trials(deepcopy=False)
    # the study holds the earlier front exactly: params as the rows' config columns, values as
    # the rows' metrics (no rounding), each tagged with the trial it came from
    assert len(seeded) == len(front)
    for t in seeded:
        row = front[t.user_attrs["warm_start_from"]]
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.values == [row["test_accuracy"], row["sparsity"]]
        expected = {"prune/sparsity": row["config.prune.sparsity"],
                    "prune/allocation/name": row["config.prune.allocation.name"],
                    "prune/schedule": row["config.prune.schedule"]}
        if row["config.prune.schedule"] == "snip_it":  # conditional: only where it was sampled
            expected["prune/steps"] = row["config.prune.steps"]
        assert t.params == expected

    # ... and the sampler breeds from it: the seeds are NSGA-II's generation 0, so the next
    # trial is of generation 1, with parents chosen among the seeds
    sampler = study.sampler
    assert isinstance(sampler, optuna.samplers.NSGAIISampler)
    assert sorted(t.number for t in sampler.get_population(study, 0)) == \
        sorted(t.number for t in seeded)
    assert search.suggest("next") is not None
    (running,) = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    assert running.user_attrs["trial_id"] == "next"  # Ray's trial, asked through the storage
    assert sampler.get_trial_generation(study, running) == 1
    parents = sampler.get_parent_population(study, 1)
    assert parents and {t.number for t in parents} <= {t.number for t in seeded}

    second = run_sweep(follow, warm_start=[first.results_dir])
    assert second.warm_started == len(points)
    new_ids = set(TrialStore(second.results_dir).dataframe()["trial_id"])
    assert len(new_ids) == 3 and not new_ids & set(rows)  # the seeds are not re-run
    # the sweep's own stored study: the seeds, then the three trials it ran
    stored = optuna.load_study(study_name="second", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(study_location(follow))))
    trials = stored.get_trials(deepcopy=False)
    assert sorted(t.user_attrs["warm_start_from"] for t in trials[:len(points)]) == \
        sorted(front)
    assert {t.user_attrs["trial_id"] for t in trials[len(points):]} == new_ids


def test_warm_start_from_results_without_the_objective(tmp_path: Path) -> None:
    from pruning_core.base.errors import ConfigError

    TrialStore(str(tmp_path / "old")).write({"trial_id": "t0", "status": "ok",
                                             "test_accuracy": 0.5})
    with pytest.raises(ConfigError, match="no value of 'sparsity'"):
        seed_points(space(tmp_path, "x", 2), [str(tmp_path / "old")])


def test_in_distribution_reads_public_bounds_only() -> None:
    from optuna.distributions import CategoricalDistribution as Cat
    from optuna.distributions import FloatDistribution as Float
    from optuna.distributions import IntDistribution as Int

    assert in_distribution(Float(0.3, 0.97), 0.3) and in_distribution(Float(0.3, 0.97), 0.97)
    assert not in_distribution(Float(0.3, 0.97), 0.98)
    assert not in_distribution(Float(0.3, 0.97), float("nan"))
    assert in_distribution(Float(0.1, 0.5, step=0.1), 0.3)  # 0.3 is 2 steps up, in floats too
    assert not in_distribution(Float(0.1, 0.5, step=0.1), 0.35)
    assert in_distribution(Int(2, 8, step=2), 6) and not in_distribution(Int(2, 8, step=2), 5)
    assert not in_distribution(Int(2, 4), 2.5) and not in_distribution(Int(2, 4), True)
    assert in_distribution(Cat(["global", "erk"]), "erk")
    assert not in_distribution(Cat(["global", "erk"]), "uniform")
    assert in_distribution(Cat([0.5, 1.0]), 1)  # an integral float read back as an int
    assert not in_distribution(Cat([1, 2]), True) and in_distribution(Cat([None, 1]), None)
