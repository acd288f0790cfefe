"""A packed sweep (``budget.pack: 2``) whose driver is SIGKILLed twice and resumed gives one
row per sampled config: none lost, none twice; every row's member is told to the study."""

from __future__ import annotations

import signal
from pathlib import Path

import optuna
import pytest

from sweeps.results.store import TrialStore

from .conftest import cli, kill_session, write_space
from .test_cli_resume import _wait_for_rows

N = 9  # odd: the last pack has one member
# 25 epochs: a pack trains ~1 s, so the sweep is still running once its first rows are on disk
# (rows go out in batches, up to row_writer.FLUSH_S after a member ends)
SPACE = f"""\
name: packkill
objectives: [{{metric: test_accuracy, mode: max}}, {{metric: sparsity, mode: max}}]
sampler: {{name: random, seed: 0}}
budget: {{num_samples: {N}, max_concurrent: 2, pack: 2, keep_checkpoints: null}}
fixed:
  model: {{name: mlp}}
  data: {{name: digits}}
  train: {{epochs: 25, optimizer: adam, lr: 0.01, device: cpu}}
params:
  prune.criterion: {{type: choice, values: [magnitude, snip]}}
  prune.sparsity: {{type: float, low: 0.3, high: 0.95}}
storage: res
wandb: {{mode: disabled}}
"""


def _kill_after(space: Path, tmp: Path, rows: int, *extra: str) -> set[str]:
    results = tmp / "res"
    proc = cli("sweep", str(space), *extra, "--num-cpus", "2", cwd=tmp)
    try:
        _wait_for_rows(results, rows, proc, timeout=300)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        kill_session(proc.pid)  # the embedded Ray of the killed driver
    return TrialStore(str(results)).trial_ids()


@pytest.mark.slow
def test_packed_sweep_killed_twice_resumes_to_one_row_per_sampled_config(tmp_path: Path,
                                                                         ) -> None:
    space = write_space(tmp_path / "space.yaml", SPACE)
    results = tmp_path / "res"
    first = _kill_after(space, tmp_path, 2)
    assert 2 <= len(first) < N and all("-m" in t for t in first)
    second = _kill_after(space, tmp_path, len(first) + 1, "--resume")
    assert len(second) > len(first) or len(second) == N
    resumed = cli("sweep", str(space), "--resume", "--num-cpus", "2", cwd=tmp_path)
    try:
        out, _ = resumed.communicate(timeout=600)
    finally:
        kill_session(resumed.pid)
    assert resumed.returncode == 0, out
    df = TrialStore(str(results)).dataframe()
    assert len(df) == N and df["trial_id"].is_unique, out
    assert set(df["status"]) == {"ok"}
    # one row per sampled config: no config twice (random floats never repeat)
    assert df["config.prune.sparsity"].is_unique
    orphaned = {p.stem for p in (results / "trials_orphaned").glob("*.parquet")}
    assert (first | second) <= set(df["trial_id"]) | orphaned  # kept, or set aside re-sampled
    # the study holds every row's member, told with the row's values
    study = optuna.load_study(study_name="packkill", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "study.log"))))
    told = {t.user_attrs.get("trial_id"): t for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE}
    for row in df.itertuples():
        assert told[row.trial_id].values == pytest.approx([row.test_accuracy, row.sparsity])
