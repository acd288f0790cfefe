"""A W&B failure is logged and never fails a trial or the sweep (a real fault: W&B cannot
write). The mid-trial fault (a killed wandb-core) is in test_wandb_live.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space

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
                  "data": {"name": "digits", "train_limit": 200}, "train": {"epochs": 2}},
        "params": {"prune.sparsity": {"type": "float", "low": 0.5, "high": 0.9}},
        "storage": str(root), "wandb": {"mode": "offline"}})
    with caplog.at_level(logging.WARNING, logger="sweeps.tune.wandb_log"):
        out = run_sweep(space)
    # wandb.init failed in both workers: the trials went on without W&B and ended ok
    assert out.rows == 2 and out.counts == {"ok": 2}
    df = TrialStore(str(root)).dataframe()
    assert len(df) == 2 and (df["status"] == "ok").all() and (df["last_epoch"] == 2).all()
    assert (root / "wandb").is_file()  # nothing was written in its place
    messages = [r.getMessage() for r in caplog.records]
    assert any("no run for 2 trial(s)" in m for m in messages)  # the driver says so
    assert any("could not be written" in m for m in messages)  # and the summary run failed
