"""Early stopping per pack member (``sweeps/tune/member_stops.py``): ASHA's rule by hand, the
driver's decision reaching the waiting pack through the board actor (real local Ray), and a real
packed sweep whose scheduler stops members, recorded ``stopped_early`` and told ``PRUNED``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.member_stops import AshaRule, MemberStopper, start_board
from sweeps.tune.pack import PACK_KEY, PACK_MEMBER, batched_report
from sweeps.tune.space import parse_space
from sweeps.tune.stop_client import ASK, StopClient, StopSpec, board_name
from sweeps.tune.study import open_storage, study_name

STOP, GO = "STOP", "CONTINUE"


def _rule(mode: str = "max") -> AshaRule:
    return AshaRule("t", "acc", mode, max_t=8, grace_period=1, reduction_factor=2,
                    final_flag="final")


def test_asha_rule_by_hand() -> None:
    r = _rule()
    assert r.rungs == [1, 2, 4, 8] and r.points == [1, 2, 4, 8]
    assert r.decide("a", {}, {"t": 1, "acc": 0.9}) == GO  # nobody at rung 1 yet
    # b at rung 1 against {a: 0.9}: 50th percentile 0.9 > 0.5
    assert r.decide("b", {}, {"t": 1, "acc": 0.5}) == STOP
    # c against {0.9, 0.5}: 50th percentile 0.7 < 0.95
    assert r.decide("c", {}, {"t": 1, "acc": 0.95}) == GO
    assert r.recorded[1] == {"a": 0.9, "b": 0.5, "c": 0.95}
    assert r.decide("a", {}, {"t": 1.5, "acc": 0.1}) == GO  # no new rung: not judged
    # d jumps over rungs 1 and 2: judged at 2 only (empty: go), and 1 counts as passed
    assert r.decide("d", {}, {"t": 3, "acc": 0.2}) == GO
    assert "d" not in r.recorded[1] and r.recorded[2] == {"d": 0.2}
    assert r.decide("d", {}, {"t": 3.5, "acc": 0.2}) == GO
    # a at rung 2 against {d: 0.2}: 0.3 > 0.2 goes on; e then: percentile of {0.2, 0.3} = 0.25
    assert r.decide("a", {}, {"t": 2, "acc": 0.3}) == GO
    assert r.decide("e", {}, {"t": 2, "acc": 0.24}) == STOP
    assert r.decide("a", {}, {"t": 8, "acc": 0.99}) == STOP  # max_t: the last rung stops
    # a final report is recorded (at its highest new rung), never stopped
    assert r.decide("c", {}, {"t": 9, "acc": 0.1, "final": True}) == GO
    assert r.recorded[8]["c"] == 0.1
    lo = _rule("min")  # min: the lower loss goes on
    assert lo.decide("a", {}, {"t": 1, "acc": 0.2}) == GO
    assert lo.decide("b", {}, {"t": 1, "acc": 0.5}) == STOP
    assert lo.decide("c", {}, {"t": 1, "acc": float("nan")}) == GO  # NaN: never below


def test_a_members_decision_reaches_the_waiting_pack(ray_local: None) -> None:
    stopper = MemberStopper(_rule(), "ms")
    board = start_board("ms")  # held, as launch holds it: an unreferenced actor is destroyed
    spec = StopSpec(board_name("ms"), tuple(float(p) for p in _rule().points), "t")
    client = StopClient(spec, timeout_s=30)
    trial = SimpleNamespace(trial_id="r0", config={PACK_KEY: [{"x": 0}, {"x": 1}]})
    reports = []
    for i, acc in ((0, 0.9), (1, 0.1)):
        assert client.asks(f"r0-m{i}", {"t": 1})
        reports.append({"t": 1, "acc": acc, PACK_MEMBER: i, ASK: f"tok{i}"})
    assert not client.asks("r0-m0", {"t": 1.5})  # rung 1 already passed
    assert stopper.on_trial_result(None, trial, batched_report(reports)) == GO  # never the pack
    assert client.stopped("tok0") is False and client.stopped("tok1") is True
    assert stopper.stopped == [("r0-m1", 1.0)]
    # no decision within the wait: the member goes on
    assert StopClient(spec, timeout_s=0.2).stopped("never-posted") is False
    del board


def _space(tmp: Path, pack: int) -> dict:
    return {
        "name": f"asha{pack}", "storage": str(tmp / f"asha{pack}"),
        "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "sampler": {"name": "grid", "seed": 0},
        "budget": {"num_samples": 8, "max_concurrent": 2, "pack": pack},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "fixed": {"seed": 0, "model": {"name": "cnn1d"},
                  "data": {"name": "mnist1d", "batch_size": 128, "train_limit": 256},
                  "train": {"epochs": 4, "optimizer": "adam", "lr": 0.01, "device": "cpu"}},
        "params": {"prune.sparsity": {"type": "choice",
                                      "values": [0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.98, 0.99]}},
        "wandb": {"mode": "disabled"}}


@pytest.mark.slow
def test_packed_sweep_stops_members_not_packs(tmp_path: Path, ray_local: None) -> None:
    space = parse_space(_space(tmp_path, 4))
    out = run_sweep(space)
    rows = TrialStore(out.results_dir).table().to_pylist()
    assert len(rows) == 8 and out.complete
    by_status: dict[str, list[dict]] = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    stopped = by_status.get("stopped_early", [])
    assert stopped and by_status.get("ok"), {k: len(v) for k, v in by_status.items()}
    assert set(by_status) <= {"ok", "stopped_early"}
    for row in stopped:  # ended at a rung, with what it had measured there
        assert row["last_epoch"] < 4 and row["test_accuracy"] is not None
        assert len(row["history"]) == row["last_epoch"]
        assert "-m" in row["trial_id"]
    for row in by_status["ok"]:
        assert row["last_epoch"] == 4
    study = optuna.load_study(study_name=study_name(space), storage=open_storage(space))
    states = {t.user_attrs["trial_id"]: t.state for t in study.trials}
    assert {states[r["trial_id"]] for r in stopped} == {TrialState.PRUNED}
    assert {states[r["trial_id"]] for r in by_status["ok"]} == {TrialState.COMPLETE}


def test_asha_rule_decides_as_rays_asha_where_no_report_skips_a_rung() -> None:
    """Against Ray's own ``ASHAScheduler`` (public API, stub trials): the same decisions on a
    seeded stream of reports that each reach one new rung; fails loudly if Ray's rule changes."""
    import random

    from ray.tune.experiment import Trial
    from ray.tune.schedulers import ASHAScheduler

    ray_asha = ASHAScheduler(time_attr="t", metric="acc", mode="max", max_t=8,
                             grace_period=1, reduction_factor=2)
    ours = _rule()
    rng = random.Random(0)
    trials = {f"t{i:02d}": Trial("prunetune_trial", stub=True, trial_id=f"t{i:02d}")
              for i in range(24)}
    for t in trials.values():
        ray_asha.on_trial_add(None, t)
    alive = dict(trials)
    decisions = []
    for step in (1, 2, 4, 8):
        went_on = {}
        for tid in sorted(alive):
            result = {"t": step, "acc": rng.random()}
            theirs = ray_asha.on_trial_result(None, alive[tid], result)
            mine = ours.decide(tid, {}, result)
            assert mine == theirs, (tid, step, result)
            decisions.append(mine)
            if mine == GO:
                went_on[tid] = alive[tid]
        alive = went_on
    assert STOP in decisions and GO in decisions  # the stream exercised both
