"""Issue 12, item 4: early stopping that respects several objectives.

The default stops nothing; ASHA with several objectives must be told the one metric it
watches; ``name: dominated`` stops a trial only when a trial at the same rung beats it on every
objective. The demo space, shrunk, keeps every non-dominated trial at full length (real Ray,
real trials on digits).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from pruning_core.base.errors import ConfigError
from sweeps.results.pareto import pareto_front
from sweeps.results.store import TrialStore
from sweeps.tune.launch import _scheduler, run_sweep
from sweeps.tune.schedulers import DominatedStopper, TargetSparsity, beats_on_every, milestones
from sweeps.tune.space import parse_space

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "search_spaces" / "demo_mnist1d.yaml"
FIXED = {"model": {"name": "mlp", "options": {"hidden": [32, 16]}},
         "data": {"name": "digits", "train_limit": 400, "test_limit": 200},
         "train": {"epochs": 4, "optimizer": "adam", "lr": 0.01, "device": "cpu"},
         "prune": {"criterion": "magnitude"}}
TWO = [{"metric": "test_accuracy", "mode": "max"}, {"metric": "sparsity", "mode": "max"}]
STOP, GO = TrialScheduler.STOP, TrialScheduler.CONTINUE


def _space(objectives: list[dict[str, str]], scheduler: dict[str, Any] | None) -> Any:
    return parse_space({"name": "mo", "objectives": objectives, "fixed": FIXED,
                        "params": {"prune.sparsity": {"type": "float", "low": 0.3,
                                                      "high": 0.95}},
                        "scheduler": scheduler})


# ----------------------------------------------------------------------------- the settings
def test_without_a_scheduler_nothing_is_stopped() -> None:
    space = _space(TWO, None)
    assert _scheduler(space, space.base_config()) is None


def test_asha_with_several_objectives_must_name_its_metric() -> None:
    with pytest.raises(ConfigError, match=r"scheduler.metric: with several objectives ASHA "
                                          r"watches one metric alone.*name: dominated"):
        _space(TWO, {"name": "asha", "grace_period": 1})
    named = _space(TWO, {"name": "asha", "metric": "test_accuracy", "grace_period": 1})
    assert named.scheduler.mode == "max"  # the objective's mode
    asha = _scheduler(named, named.base_config())
    assert isinstance(asha, ASHAScheduler) and asha.metric == "test_accuracy"
    with pytest.raises(ConfigError, match=r"scheduler.mode: train_loss is not an objective"):
        _space(TWO, {"metric": "train_loss"})
    # one objective: ASHA on it, unless it is reported only at the end
    one = _space([{"metric": "test_loss", "mode": "min"}], {"grace_period": 1})
    assert (one.scheduler.metric, one.scheduler.mode) == ("test_loss", "min")
    with pytest.raises(ConfigError, match=r"scheduler.metric: the objective flops is reported "
                                          r"only when a trial ends"):
        _space([{"metric": "flops", "mode": "min"}], {"grace_period": 1})


@pytest.mark.parametrize(("objectives", "scheduler", "message"), [
    (TWO, {"name": "dominated", "metric": "test_accuracy"},
     r"scheduler.metric: name: dominated compares every objective"),
    (TWO[:1], {"name": "dominated"}, r"scheduler.name: dominated needs two or more objectives"),
    ([TWO[0], {"metric": "flops", "mode": "min"}], {"name": "dominated"},
     r"scheduler.name: dominated compares the objectives at each rung, but flops is reported "
     r"only when a trial ends"),
])
def test_dominated_settings_refused(objectives: list, scheduler: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _space(objectives, scheduler)


def test_dominated_rungs_follow_the_plan_clock() -> None:
    # 4-epoch plan, grace 1 epoch = 250 per-mille, rf 2: rungs at 250 and 500 (1000 is the end)
    space = _space(TWO, {"name": "dominated", "grace_period": 1, "reduction_factor": 2})
    stopper = _scheduler(space, space.base_config())
    assert isinstance(stopper, DominatedStopper)
    assert stopper.rungs == [250, 500] and stopper.metrics == ["test_accuracy", "sparsity"]
    assert milestones(100, 3, 1001) == [100, 300, 900]
    assert milestones(333, 2, 500) == [333]


# ----------------------------------------------------------------------------- the rule
def _r(progress: int, acc: float, sparsity: float, **kw: Any) -> dict[str, Any]:
    return {"progress": progress, "test_accuracy": acc, "sparsity": sparsity, **kw}


def test_only_trials_beaten_on_every_objective_are_stopped() -> None:
    s = DominatedStopper("progress", ["test_accuracy", "sparsity"], ["max", "max"], [250, 500],
                         final_flag="final")
    assert s.decide("a", {}, _r(250, 0.80, 0.70)) == GO  # first at the rung
    assert s.decide("b", {}, _r(250, 0.60, 0.60)) == STOP  # worse on both
    assert s.decide("c", {}, _r(250, 0.50, 0.90)) == GO  # a trade-off: sparser
    assert s.decide("d", {}, _r(250, 0.90, 0.30)) == GO  # a trade-off: more accurate
    assert s.decide("e", {}, _r(250, 0.60, 0.70)) == GO  # tied on sparsity: not beaten on every
    assert s.decide("f", {}, _r(250, 0.40, float("nan"))) == GO  # nothing to compare
    assert s.decide("a", {}, _r(251, 0.10, 0.10)) == GO  # rung 250 already judged
    # rung 500: judged against the trials measured at 500 only
    assert s.decide("c", {}, _r(500, 0.55, 0.90)) == GO
    assert s.decide("a", {}, _r(500, 0.60, 0.80)) == GO  # "c" is sparser, "a" more accurate
    assert s.decide("d", {}, _r(500, 0.40, 0.30)) == STOP  # beaten by both
    # a trial's last report (its final result) is never stopped
    assert s.decide("g", {}, _r(1000, 0.0, 0.0, final=True)) == GO
    assert s.stopped == [("b", 250), ("d", 500)]
    assert beats_on_every((1.0, -2.0), (0.5, -3.0)) and not beats_on_every((1, 1), (1, 0))


def test_min_objectives_are_oriented() -> None:
    s = DominatedStopper("progress", ["test_loss", "sparsity"], ["min", "max"], [100])
    assert s.decide("a", {}, {"progress": 100, "test_loss": 0.5, "sparsity": 0.8}) == GO
    assert s.decide("b", {}, {"progress": 100, "test_loss": 0.9, "sparsity": 0.7}) == STOP
    assert s.decide("c", {}, {"progress": 100, "test_loss": 0.4, "sparsity": 0.7}) == GO


def test_a_trial_not_yet_at_its_target_sparsity_is_judged_at_its_target() -> None:
    """An ``after`` (or gradual) trial reports sparsity 0 while it pretrains: measured, it
    looks beaten; its plan ends at its target, which no trial at the rung beats."""
    base = {**FIXED, "prune": {"criterion": "magnitude"}}
    bound = TargetSparsity(base)
    sparse = {"prune": {"sparsity": 0.9}}
    assert bound(sparse) == {"sparsity": pytest.approx(0.9)}
    s = DominatedStopper("progress", ["test_accuracy", "sparsity"], ["max", "max"], [250],
                         bound=bound)
    assert s.decide("a", {"prune": {"sparsity": 0.5}}, _r(250, 0.80, 0.50)) == GO
    assert s.decide("late", sparse, _r(250, 0.70, 0.0)) == GO  # 0.9 at the end: a trade-off
    assert s.decide("b", {"prune": {"sparsity": 0.4}}, _r(250, 0.70, 0.40)) == STOP
    # as the one others are compared with, a trial counts as measured (0.0, not 0.9)
    assert s.recorded[250]["late"] == (0.70, 0.0)


# ----------------------------------------------------------------------------- the demo
def _shrunk_demo(tmp: Path) -> Any:
    """The demo space as shipped (objectives, sampler, params, scheduler), shrunk: 6 trials
    of 3 epochs on digits with a tiny MLP, one at a time (the rung order is then the seeded
    sampling order), and rungs in epochs of the 3-epoch plan."""
    data = yaml.safe_load(DEMO.read_text())
    assert data["scheduler"]["name"] == "dominated"  # early stopping is on in the demo
    data = copy.deepcopy(data)
    data["budget"] = {"num_samples": 6, "max_concurrent": 1, "max_failures": 0}
    data["scheduler"]["grace_period"] = 1
    data["fixed"].update({"model": FIXED["model"], "data": FIXED["data"],
                          "train": {**data["fixed"]["train"], "epochs": 3}})
    data["storage"] = str(tmp / "demo")
    data["wandb"] = {"mode": "disabled"}
    return parse_space(data)


@pytest.mark.slow
def test_the_demo_with_early_stopping_keeps_its_front_at_full_length(tmp_path: Path,
                                                                      ray_local: None) -> None:
    space = _shrunk_demo(tmp_path)
    outcome = run_sweep(space)
    df = TrialStore(outcome.results_dir).dataframe()
    assert len(df) == 6 and set(df["status"]) <= {"ok", "stopped_early"}, df["status"]
    stopped = df[df["status"] == "stopped_early"]
    assert len(stopped) >= 1, "nothing was stopped: the test would prove nothing"
    assert (stopped["last_epoch"] < 3).all()
    # the front over every trial, stopped ones at the values they were stopped with
    front = pareto_front(df, ["test_accuracy:max", "sparsity:max"])
    assert set(front["status"]) == {"ok"} and (front["last_epoch"] == 3).all()
    # Optuna was told so: the stopped trials are PRUNED, the front is all COMPLETE
    import optuna

    from sweeps.tune.study import load_study

    states = {t.user_attrs["trial_id"]: t.state for t in load_study(space).get_trials()}
    assert {states[t] for t in stopped["trial_id"]} == {optuna.trial.TrialState.PRUNED}
    assert {states[t] for t in front["trial_id"]} == {optuna.trial.TrialState.COMPLETE}
    assert not math.isnan(pd.to_numeric(front["test_accuracy"]).min())
