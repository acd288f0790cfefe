"""A W&B failure is logged and never fails the sweep (a real fault: W&B cannot write)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sweeps.launch import run_sweep
from sweeps.space import parse_space
from sweeps.store import TrialStore
from sweeps.wandb_log import WandbSink

pytestmark = pytest.mark.slow


def test_unwritable_wandb_dir_does_not_fail_the_sweep(tmp_path: Path, ray_local: None,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "res"
    root.mkdir()
    (root / "wandb").write_text("a file where W&B wants its directory")
    space = parse_space({
        "name": "wbfault", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "sampler": {"name": "random", "seed": 0}, "budget": {"num_samples": 2,
                                                              "max_concurrent": 2},
        "fixed": {"model": {"name": "mlp", "options": {"hidden": [16]}},
                  "data": {"name": "digits", "train_limit": 200}, "train": {"epochs": 1}},
        "params": {"prune.sparsity": {"type": "float", "low": 0.5, "high": 0.9}},
        "storage": str(root), "wandb": {"mode": "offline"}})
    with caplog.at_level(logging.WARNING, logger="sweeps.wandb_log"):
        out = run_sweep(space)
    assert out.rows == 2 and out.counts == {"ok": 2}
    assert len(TrialStore(str(root)).dataframe()) == 2
    assert any("could not be written" in r.getMessage() for r in caplog.records)


def test_writer_processes_write_offline_runs(tmp_path: Path) -> None:
    sink = WandbSink("s", "p", str(tmp_path), mode="offline")
    for i in range(3):
        sink.trial_finished({"trial_id": f"t{i}", "status": "ok", "test_accuracy": 0.5,
                             "config.prune.sparsity": 0.9}, [{"epoch": 1, "test_accuracy": 0.5}])
    sink.sweep_finished([{"trial_id": "t0", "status": "ok", "test_accuracy": 0.5}])
    sink.close()
    # offline-run-<date>_<time>-<run id>; run ids are "<sweep>-<trial>" and "<sweep>-summary"
    runs = sorted(p.name.split("-", 3)[3] for p in (tmp_path / "wandb").glob("offline-run-*"))
    assert runs == ["s-summary", "s-t0", "s-t1", "s-t2"]
    assert sink.failures == 0
