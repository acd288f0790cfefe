"""End-to-end sweeps on real Ray + Optuna + Parquet + W&B offline (tiny: digits, MLP)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space

from .conftest import offline_run_id
from .faults import FaultyRun

pytestmark = pytest.mark.slow

FIXED = {"model": {"name": "mlp"}, "data": {"name": "digits"},
         "train": {"epochs": 3, "optimizer": "sgd", "device": "cpu"},
         "prune": {"criterion": "magnitude", "sparsity": 0.5}}


def _space(tmp: Path, **kw: object) -> dict:
    return {"name": "e2e", "objectives": [{"metric": "test_accuracy", "mode": "max"},
                                          {"metric": "sparsity", "mode": "max"}],
            "budget": {"num_samples": 4, "max_concurrent": 2, "max_failures": 1},
            "fixed": FIXED, "storage": str(tmp / "res"), **kw}


def test_faults_are_retried_recorded_and_the_sweep_goes_on(tmp_path: Path, ray_local: None,
                                                             ) -> None:
    # lr 0.1: ok; 0.12: raises once, retried from its checkpoint; 0.11: always raises;
    # 1e12: a real NaN loss.
    space = parse_space(_space(
        tmp_path, sampler={"name": "grid", "seed": 0},
        params={"train.lr": {"type": "choice", "values": [0.1, 0.12, 0.11, 1e12]}}))
    logs = tmp_path / "logs"
    logs.mkdir()
    outcome = run_sweep(space, run_fn=FaultyRun(str(logs)))
    df = TrialStore(outcome.results_dir).dataframe().set_index("config.train.lr")
    assert outcome.rows == 4 and df["trial_id"].is_unique
    assert df.loc[0.1, "status"] == "ok"
    assert df.loc[0.1, "last_epoch"] == 3 and df.loc[0.1, "epochs"] == 3
    assert df.loc[0.1, "test_accuracy"] > 0.5  # it learned something
    assert df.loc[0.1, "params_kept"] < df.loc[0.1, "params"]
    assert {c for c in df.columns if c.startswith("layer_sparsity.")} == {
        "layer_sparsity.1.weight", "layer_sparsity.3.weight", "layer_sparsity.5.weight"}
    # retried: the second attempt resumed after epoch 1 instead of restarting
    assert df.loc[0.12, "status"] == "ok" and df.loc[0.12, "failures"] == 1
    events = [json.loads(x) for x in (logs / "lr0.12.jsonl").read_text().splitlines()]
    starts = [e for e in events if "start" in e]
    assert starts[0]["resume_done"] is None and starts[1]["resume_done"] is not None
    epochs = [e["epoch"] for e in events if "epoch" in e]
    assert epochs == [1, 2, 2, 3]  # epoch 1 not re-run
    assert len(df.loc[0.12, "history"]) == 3
    # always failing: retried max_failures times, then recorded with its message
    assert df.loc[0.11, "status"] == "error"
    assert df.loc[0.11, "error"] == "ValueError: injected fault: always fails"
    assert df.loc[0.11, "failures"] == 2
    assert (logs / "lr0.11.jsonl").read_text().count("start") == 2
    # NaN loss: diverged, with the epoch
    assert df.loc[1e12, "status"] == "diverged" and df.loc[1e12, "diverged_epoch"] == 1
    # provenance columns
    row = df.loc[0.1]
    assert row["sweep"] == "e2e" and row["prunetune_version"] and row["node_id"]
    assert row["end_time"] >= row["start_time"] and row["seed"] == 0
    # W&B: one offline run id per trial plus the summary run, under the results dir (a trial's
    # retries and its Pareto-flag update reopen the same id in further directories)
    runs = sorted(p.name for p in (Path(outcome.results_dir) / "wandb").glob("offline-run-*"))
    ids = {offline_run_id(r) for r in runs}
    assert len(ids) == 5 and "e2e-summary" in ids, runs


def test_asha_stops_trials_early_and_they_are_flagged(tmp_path: Path, ray_local: None) -> None:
    space = parse_space(_space(
        tmp_path, name="asha", sampler={"name": "grid", "seed": 0},
        # the screen off: the 0.99x trials must train (at chance) for ASHA to stop them
        budget={"num_samples": 8, "max_concurrent": 2, "screen": {"enabled": False}},
        scheduler={"metric": "test_accuracy", "mode": "max", "grace_period": 1,
                   "reduction_factor": 2},
        fixed={**FIXED, "train": {**FIXED["train"], "optimizer": "adam", "lr": 0.01},
               "prune": {"criterion": "magnitude"}},
        params={"prune.sparsity": {"type": "choice",
                                   "values": [0.1, 0.2, 0.3, 0.4, 0.996, 0.997, 0.998, 0.999]}},
        wandb={"mode": "disabled"}))
    outcome = run_sweep(space)
    df = TrialStore(outcome.results_dir).dataframe()
    assert outcome.rows == 8
    assert set(df["status"]) <= {"ok", "stopped_early"}
    stopped = df[df["status"] == "stopped_early"]
    assert len(stopped) >= 1
    assert (stopped["last_epoch"] < 3).all()
    # a stopped trial keeps what it measured: one history entry per epoch it trained
    assert all(len(h) == e for h, e in zip(stopped["history"], stopped["last_epoch"],
                                           strict=True))
    assert (df[df["status"] == "ok"]["last_epoch"] == 3).all()
    assert not (Path(outcome.results_dir) / "wandb").exists()


def test_existing_results_need_resume(tmp_path: Path, ray_local: None) -> None:
    from pruning_core.base.errors import ConfigError

    space = parse_space(_space(tmp_path, budget={"num_samples": 1}, wandb={"mode": "disabled"},
                               params={"train.lr": {"type": "float", "low": 0.05,
                                                    "high": 0.1}}))
    assert run_sweep(space).rows == 1
    with pytest.raises(ConfigError, match="results already exist"):
        run_sweep(space)
    again = run_sweep(space, resume=True)  # a finished sweep resumes to the same rows
    assert again.rows == 1 and again.complete
