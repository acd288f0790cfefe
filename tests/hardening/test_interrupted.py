"""Issue 8, item 6: a trial still running when the sweep stops is ``interrupted``, never
``stopped_early`` (that status means a scheduler's decision). Real Ray, no scheduler.
Issue 22, item 2: Ctrl-C ends in one line (what was saved, the exact ``--resume``), Ray's and
W&B's messages about the trials it cut short kept in the driver log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space
from tests.sweeps.conftest import kill_session

from .conftest import REPO
from .slow_run import SlowRun

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    from sweeps.tune.launch import init_ray

    init_ray(None, num_cpus=2)
    yield
    ray.shutdown()


def test_time_budget_leaves_running_trials_interrupted(tmp_path: Path, ray_local: None) -> None:
    space = parse_space({
        "name": "budget", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "sampler": {"name": "random", "seed": 0},
        "budget": {"num_samples": 2, "max_concurrent": 2, "time_budget_s": 6},
        "fixed": {"model": {"name": "mlp"}, "data": {"name": "digits"},
                  "train": {"epochs": 20, "device": "cpu"}},
        "params": {"prune.sparsity": {"type": "float", "low": 0.3, "high": 0.9}},
        "storage": str(tmp_path / "res"), "wandb": {"mode": "disabled"},
    })
    outcome = run_sweep(space, run_fn=SlowRun(1.0))  # 20 epochs x 1 s > the 6 s budget
    df = TrialStore(outcome.results_dir).dataframe()
    assert len(df) == 2 and set(df["status"]) == {"interrupted"}, df[["trial_id", "status"]]
    assert df["error"].isna().all()
    assert (df["last_epoch"].fillna(0) < 20).all()  # they really were cut short
    assert outcome.counts == {"interrupted": 2}


#: a model factory whose first import in a Ray worker takes a minute: a Ctrl-C lands while
#: the first trial has not started W&B nor reported, and the others wait for the one CPU
SLOW_START = """\
import time
from pathlib import Path

import ray
from torch import nn

if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
    Path({marker!r}).write_text("started")
    time.sleep(60)


def build(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
"""

CUT_SHORT_SPACE = """\
name: cut
objectives: [{metric: test_accuracy, mode: max}, {metric: sparsity, mode: max}]
sampler: {name: random, seed: 0}
budget: {num_samples: 3, max_concurrent: 3}
fixed:
  model: {name: "slow_start:build"}
  data: {name: digits}
  train: {epochs: 1, device: cpu}
params:
  prune.sparsity: {type: float, low: 0.5, high: 0.9}
storage: cut
wandb: {mode: offline}
"""


def test_ctrl_c_is_one_line_and_the_cut_short_messages_go_to_the_driver_log(
        tmp_path: Path) -> None:
    marker = tmp_path / "worker_started"
    (tmp_path / "slow_start.py").write_text(SLOW_START.format(marker=str(marker)))
    (tmp_path / "space.yaml").write_text(CUT_SHORT_SPACE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "sweeps.cli", "sweep", "space.yaml",
                             "--num-cpus", "1"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "the first trial did not start in time"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=180)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 130, out + err
    results = tmp_path / "cut"
    log = results / "driver.log"
    # one line: what was saved, where, the exact command, where the rest went; nothing else
    assert err == "", err
    assert out.splitlines() == [
        f"incomplete (stopped with Ctrl-C): 3 trial rows saved (3 interrupted) in "
        f"{results}/trials; finish with: prunetune sweep space.yaml --resume --num-cpus 1; "
        f"Ray's and W&B's messages: {log}"], out
    for noise in ("Tuner.restore", "Failed to fetch metrics", "FileNotFoundError",
                  "W&B: no run", "W&B failed", "Stop signal received"):
        assert noise not in out + err
    kept = log.read_text()
    assert "Resume experiment with: Tuner.restore(" in kept, kept
    assert "Failed to fetch metrics" in kept and "FileNotFoundError" in kept, kept
    assert "W&B: no run for 3 interrupted trial(s) (stopped before their W&B run started" \
        in kept, kept
    assert set(TrialStore(str(results)).dataframe()["status"]) == {"interrupted"}
