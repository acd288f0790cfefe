"""ASHA judges every trial on its own plan: real Ray + ASHA + Optuna, digits, a tiny MLP.

A trial's clock is the share of its *own* plan it has trained (per-mille), so IMP trials
(``train.epochs`` per level), ``after`` trials (pretraining + fine-tuning) and searched
``train.epochs`` get their whole plan, and are compared at the same fraction of it.
Plan sizes below are counted by hand from the timings' definitions (docs/sweeps.md):
``before``: T; ``after``: pretrain + T; ``imp`` (rewind to 0): T per level plus the dense T.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pruning_core.base.errors import ConfigError
from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep, scheduler_clock
from sweeps.tune.space import parse_space

MLP = {"name": "mlp", "options": {"hidden": [32, 16]}}
DIGITS = {"name": "digits", "train_limit": 300, "test_limit": 150}
TRAIN = {"epochs": 2, "optimizer": "adam", "lr": 0.01, "device": "cpu"}


def _space(tmp: Path, name: str, fixed: dict, params: dict, scheduler: dict, n: int) -> object:
    return parse_space({
        "name": name,
        "objectives": [{"metric": "test_accuracy", "mode": "max"},
                       {"metric": "sparsity", "mode": "max"}],
        "sampler": {"name": "grid", "seed": 0},
        # one at a time: ASHA's rung decisions follow the (seeded) sampling order
        "budget": {"num_samples": n, "max_concurrent": 1},
        "scheduler": scheduler, "fixed": fixed, "params": params,
        "storage": str(tmp / name), "wandb": {"mode": "disabled"}})


def _first_report_at_or_past(share: float, plan: int) -> int:
    """The epoch whose report first reaches ``share`` of a ``plan``-epoch plan."""
    return next(e for e in range(1, plan + 1) if e / plan >= share)


# ----------------------------------------------------------------- the clock (no Ray run)
@pytest.mark.parametrize(("prune", "sched", "expected"), [
    # before, T=2: plan 2 epochs; grace 1 epoch = 500 per-mille; max_t unset: one past the end
    ({"timing": {"name": "before"}}, {"grace_period": 1}, (500, 1001, 2)),
    # imp, linear in 2 steps, T=2: 2 + 2 * 2 = 6 epochs; 1/6 rounded down; max_t 3 = half
    ({"timing": {"name": "imp"}, "schedule": "linear", "steps": 2}, {"grace_period": 1, "max_t": 3},
     (166, 500, 6)),
    # after, pretrain 3, T=2: 5 epochs; max_t at (or past) the plan's end: nothing cut
    ({"timing": {"name": "after", "pretrain_epochs": 3}}, {"grace_period": 2, "max_t": 9},
     (400, 1001, 5)),
])
def test_grace_period_and_max_t_are_epochs_of_the_fixed_plan(prune: dict, sched: dict,
                                                              expected: tuple) -> None:
    from sweeps.tune.space import SchedulerSpec

    base = {"model": MLP, "data": DIGITS, "train": TRAIN,
            "prune": {"criterion": "magnitude", "sparsity": 0.5, **prune}}
    spec = SchedulerSpec(metric="test_accuracy", mode="max", **sched)
    assert scheduler_clock(spec, base) == expected


def test_grace_period_past_the_plan_is_bad_input(tmp_path: Path) -> None:
    space = _space(tmp_path, "late", {"model": MLP, "data": DIGITS, "train": TRAIN,
                                      "prune": {"criterion": "magnitude"}},
                   {"prune.sparsity": {"type": "choice", "values": [0.5]}},
                   {"metric": "test_accuracy", "mode": "max", "grace_period": 3}, 1)
    with pytest.raises(ConfigError, match=r"^scheduler.grace_period: 3 epochs is past the "
                                          r"fixed config's plan \(2 training epochs\)"):
        run_sweep(space)  # refused before Ray starts or anything is written
    assert not (tmp_path / "late").exists()


# ----------------------------------------------------------------- real sweeps
@pytest.mark.slow
def test_imp_trials_that_finish_their_plan_are_never_stopped_early(tmp_path: Path,
                                                                   ray_local: None) -> None:
    # IMP, exponential schedule in 2 levels, T = 2: a plan of 2 + 2 * 2 = 6 epochs, 3x
    # train.epochs (the old clock, train.epochs + 1, stopped every one of these at epoch 3).
    plan = 6
    fixed = {"model": MLP, "data": {"name": "digits"}, "train": TRAIN,
             "prune": {"criterion": "magnitude", "timing": {"name": "imp"},
                       "schedule": "exponential", "steps": 2}}
    params = {"prune.sparsity": {"type": "choice", "values": [0.3, 0.5, 0.9, 0.9995]}}
    sched = {"metric": "test_accuracy", "mode": "max", "grace_period": 1,
             "reduction_factor": 2}
    outcome = run_sweep(_space(tmp_path, "imp", fixed, params, sched, 4))
    df = TrialStore(outcome.results_dir).dataframe().sort_values("start_time")
    assert outcome.rows == 4 and set(df["status"]) <= {"ok", "stopped_early"}
    ok, stopped = df[df["status"] == "ok"], df[df["status"] == "stopped_early"]
    # the first trial meets empty rungs: it always runs its whole plan
    assert df.iloc[0]["status"] == "ok"
    for _, row in ok.iterrows():  # finished: the whole IMP plan, every epoch in the history
        assert row["last_epoch"] == plan and row["epochs"] == plan
        assert [h["epoch"] for h in row["history"]] == list(range(1, plan + 1))
        assert row["sparsity"] == pytest.approx(row["config.prune.sparsity"], abs=0.01)
    # rungs at 1/6, 2/6, 4/6 of the plan (grace 1 epoch of the 6-epoch fixed plan, rf 2):
    # a stopped trial stopped at one of them, before its plan ended, with no final report
    rungs = {_first_report_at_or_past(k / 6, plan) for k in (1, 2, 4)}
    assert rungs == {1, 2, 4}
    assert set(stopped["last_epoch"]) <= rungs
    assert all(len(h) == e for h, e in zip(stopped["history"], stopped["last_epoch"],
                                           strict=True))  # stopped trials keep their epochs
    # the sweep still cuts: the ticket headed for 99.95 % (97.8 % after level 1: about 0.17
    # test accuracy against about 0.7 for the others at 4/6 of the plan) loses at that rung
    assert 0.9995 in set(stopped["config.prune.sparsity"])


@pytest.mark.slow
def test_mixed_plans_are_judged_at_the_same_share_of_each_plan(tmp_path: Path,
                                                               ray_local: None) -> None:
    # searched train.epochs x timing: plans of 2 to 24 epochs. The fixed plan is `before` with
    # train.epochs at its default, 10: grace_period 5 is half of every plan.
    train = {k: v for k, v in TRAIN.items() if k != "epochs"}
    fixed = {"model": MLP, "data": DIGITS, "train": train,
             "prune": {"criterion": "magnitude", "sparsity": 0.5,
                       "timing": {"pretrain_epochs": 1}}}
    params = {"train.epochs": {"type": "choice", "values": [2, 12]},
              "prune.timing": {"type": "choice", "values": ["before", "after", "imp"]}}
    # ASHA on sparsity, lower is better: at half its plan an IMP trial has not pruned yet (0.0)
    # while `before` / `after` trials are at 0.5, so IMP trials can never lose at the rung.
    sched = {"metric": "sparsity", "mode": "min", "grace_period": 5, "reduction_factor": 2}
    outcome = run_sweep(_space(tmp_path, "mixed", fixed, params, sched, 6))
    df = TrialStore(outcome.results_dir).dataframe()
    assert outcome.rows == 6
    t = df["config.train.epochs"]
    timing = df["config.prune.timing.name"]
    plans = t.where(timing == "before", t + 1).where(timing != "imp", 2 * t)
    assert sorted(zip(timing, t, plans, strict=True)) == [
        ("after", 2, 3), ("after", 12, 13), ("before", 2, 2), ("before", 12, 12),
        ("imp", 2, 4), ("imp", 12, 24)]
    for (_, row), plan in zip(df.iterrows(), plans, strict=True):
        what = (row["config.prune.timing.name"], row["config.train.epochs"], row["status"])
        if row["status"] == "ok":  # ran its whole plan, however long
            assert row["last_epoch"] == plan and row["epochs"] == plan, what
            assert len(row["history"]) == plan, what
        else:  # stopped at the one rung, half of *its* plan (5 of 10 epochs, rf 2)
            assert row["status"] == "stopped_early", what
            assert row["last_epoch"] == _first_report_at_or_past(0.5, plan) < plan, what
            assert row["config.prune.timing.name"] != "imp", what
            assert row["sparsity"] == pytest.approx(0.5, abs=1e-3), what
            assert len(row["history"]) == row["last_epoch"], what
            # the size it trained at, kept although the final report never came
            assert row["target_sparsity"] == pytest.approx(0.5), what
            assert 0 < row["flops"] < row["flops_dense"] and row["params_kept"] < row["params"]
            if row["config.prune.timing.name"] == "before":  # every epoch at the final size
                assert row["train_flops"] == 3 * row["flops"] * row["last_epoch"] * 300, what
    # IMP trials top the rung: both run their whole plan, the 24-epoch one included (the old
    # clock, epochs of the fixed plan with max_t = 10 + 1, cut it at epoch 11)
    imp = df[timing == "imp"]
    assert (imp["status"] == "ok").all() and sorted(imp["last_epoch"]) == [4, 24]
    assert imp["sparsity"].tolist() == pytest.approx([0.5, 0.5], abs=1e-3)
