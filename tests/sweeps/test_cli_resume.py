"""The CLI on real faults: SIGKILL / Ctrl-C of the driver, then ``--resume``; validate errors."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sweeps.cli import app
from sweeps.store import TrialStore

from .conftest import REPO, cli, kill_session, write_space

SPACE = """\
name: kill
objectives: [{metric: test_accuracy, mode: max}, {metric: sparsity, mode: max}]
sampler: {name: random, seed: 0}
budget: {num_samples: 8, max_concurrent: 2}
fixed:
  model: {name: mlp}
  data: {name: digits}
  train: {epochs: 4, optimizer: adam, lr: 0.01, device: cpu}
params:
  prune.criterion: {type: choice, values: [magnitude, snip]}
  prune.sparsity: {type: float, low: 0.3, high: 0.95}
storage: res
"""


def _wait_for_rows(results: Path, n: int, proc: object, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(list((results / "trials").glob("*.parquet"))) >= n:
            return
        if proc.poll() is not None:  # type: ignore[attr-defined]
            raise AssertionError(f"sweep ended early: {proc.stdout.read()}")  # type: ignore[attr-defined]
        time.sleep(0.2)
    raise AssertionError("no rows appeared in time")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_interrupted_sweep_resumes_to_exactly_num_samples(tmp_path: Path,
                                                          sig: signal.Signals) -> None:
    space = write_space(tmp_path / "space.yaml", SPACE)
    results = tmp_path / "res"
    proc = cli("sweep", str(space), "--num-cpus", "2", cwd=tmp_path)
    try:
        _wait_for_rows(results, 2, proc)
        proc.send_signal(sig)
        proc.wait(timeout=120)
    finally:
        kill_session(proc.pid)  # the embedded Ray of a SIGKILLed driver
    before = TrialStore(str(results)).trial_ids()
    assert 2 <= len(before) < 8

    resumed = cli("sweep", str(space), "--resume", "--num-cpus", "2", cwd=tmp_path)
    try:
        out, _ = resumed.communicate(timeout=300)
    finally:
        kill_session(resumed.pid)
    assert resumed.returncode == 0, out
    assert "8/8 recorded" in out and "Pareto front" in out
    df = TrialStore(str(results)).dataframe()
    assert len(df) == 8 and df["trial_id"].is_unique
    assert set(df["status"]) == {"ok"}
    kept = before & set(df["trial_id"])
    orphaned = {p.stem for p in (results / "trials_orphaned").glob("*.parquet")}
    assert kept | orphaned == before  # every earlier row kept, or set aside as a re-run sample


def test_validate_command() -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["validate", str(REPO / "search_spaces/demo_mnist1d.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "sampled configurations are valid" in ok.output


def test_validate_reports_field_and_line(tmp_path: Path) -> None:
    bad = write_space(tmp_path / "bad.yaml", SPACE.replace("low: 0.3", "lo: 0.3"))
    result = CliRunner().invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "params.prune.sparsity.lo (line 11): unknown key" in result.output
    missing = CliRunner().invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read search space" in missing.output
