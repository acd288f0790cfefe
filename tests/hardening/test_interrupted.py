"""Issue 8, item 6: a trial still running when the sweep stops is ``interrupted``, never
``stopped_early`` (that status means a scheduler's decision). Real Ray, no scheduler."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space

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
