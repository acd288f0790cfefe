"""The searcher of a packed sweep (real Optuna, no Ray run): K Optuna trials per Ray trial,
``num_samples`` members in all (the last pack smaller), each member told its own final result
as it arrives, members never told settled PRUNED / FAIL with their pack; the state pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from sweeps.tune.launch import ray_trials
from sweeps.tune.pack import PACK_KEY, PACK_MEMBER
from sweeps.tune.space import parse_space
from sweeps.tune.study import StudySearch, new_study, open_storage, study_name


def _searcher(tmp: Path, n: int, pack: int) -> tuple[StudySearch, optuna.Study, object]:
    space = parse_space({
        "name": "ps", "storage": str(tmp / "ps"), "sampler": {"name": "random", "seed": 0},
        "objectives": [{"metric": "test_accuracy", "mode": "max"},
                       {"metric": "sparsity", "mode": "max"}],
        "budget": {"num_samples": n, "pack": pack},
        "fixed": {"model": {"name": "mlp"}, "data": {"name": "digits"}},
        "params": {"prune.sparsity": {"type": "float", "low": 0.1, "high": 0.9}}})
    storage = open_storage(space)
    sampler = space.make_sampler()
    study = new_study(space, storage, sampler)
    s = StudySearch(space.define_by_run(), metric=space.metrics, mode=space.modes,
                    sampler=sampler, storage=storage, study_name=study_name(space),
                    pack=space.budget.pack_size(), total=n)
    return s, study, space


def _final(i: int, acc: float, sp: float, status: str = "ok") -> dict:
    return {"final": True, "result_status": status, "test_accuracy": acc, "sparsity": sp,
            PACK_MEMBER: i}


def test_packs_ask_k_each_and_tell_each_members_own_result(tmp_path: Path) -> None:
    s, study, space = _searcher(tmp_path, 5, 2)
    assert ray_trials(space) == 3  # type: ignore[arg-type]
    packs = [s.suggest(f"r{j}") for j in range(3)]
    assert [len(p[PACK_KEY]) for p in packs] == [2, 2, 1]  # type: ignore[index]
    assert s.suggest("r3") == Searcher.FINISHED
    sps = [m["prune"]["sparsity"] for p in packs for m in p[PACK_KEY]]  # type: ignore[index]
    assert len(set(sps)) == 5
    # r0: both members report; r1: member 0 reports, then the pack errors; r2: diverged
    s.on_trial_result("r0", {**_final(1, 0.7, sps[1]), "training_iteration": 2})
    s.on_trial_result("r0", {"test_accuracy": 0.5, PACK_MEMBER: 0})  # an epoch: not told
    s.on_trial_result("r0", _final(0, 0.6, sps[0]))
    s.on_trial_complete("r0", _final(0, 0.6, sps[0]))
    s.on_trial_result("r1", _final(0, 0.8, sps[2]))
    s.on_trial_complete("r1", None, error=True)
    s.on_trial_result("r2", _final(0, 0.1, sps[4], status="diverged"))
    s.on_trial_complete("r2", _final(0, 0.1, sps[4], status="diverged"))
    pickle.loads(pickle.dumps(s.__dict__))  # Ray snapshots the searcher's state
    got = {t.user_attrs["trial_id"]: t for t in study.trials}
    assert set(got) == {"r0-m0", "r0-m1", "r1-m0", "r1-m1", "r2-m0"}
    assert got["r0-m0"].values == [0.6, sps[0]] and got["r0-m1"].values == [0.7, sps[1]]
    assert got["r1-m0"].state == TrialState.COMPLETE and got["r1-m0"].values == [0.8, sps[2]]
    assert got["r1-m1"].state == TrialState.FAIL  # never finished: its pack errored
    assert got["r2-m0"].state == TrialState.FAIL  # diverged, as an unpacked trial
    assert got["r0-m1"].params["prune/sparsity"] == sps[1]  # its own config


def test_pack_one_is_todays_searcher(tmp_path: Path) -> None:
    s, study, _ = _searcher(tmp_path, 3, 1)
    cfg = s.suggest("t0")
    assert PACK_KEY not in cfg and "prune" in cfg  # type: ignore[operator]
    s.on_trial_complete("t0", {"final": True, "result_status": "ok", "test_accuracy": 0.5,
                               "sparsity": cfg["prune"]["sparsity"]})  # type: ignore[index]
    assert [t.user_attrs["trial_id"] for t in study.trials] == ["t0"]
    assert study.trials[0].state == TrialState.COMPLETE
