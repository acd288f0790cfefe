"""Issue 12, item 3: the Optuna study lives in storage the user owns and mirrors the rows.

Real Optuna storages (journal file, SQLite), real Ray (sweeps on digits with a tiny MLP), the
real ``optuna-dashboard`` command. Nothing is mocked.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from pruning_core.base.errors import ConfigError
from sweeps.results.pareto import pareto_front
from sweeps.results.store import TrialStore
from sweeps.tune.launch import _search, run_sweep
from sweeps.tune.space import parse_space
from sweeps.tune.study import new_study, open_storage, study_location

from .conftest import cli, kill_session, write_space

FIXED = {"model": {"name": "mlp", "options": {"hidden": [32, 16]}},
         "data": {"name": "digits", "train_limit": 400, "test_limit": 200},
         "train": {"epochs": 3, "optimizer": "adam", "lr": 0.01, "device": "cpu"},
         "prune": {"criterion": "magnitude"}}
TWO = [{"metric": "test_accuracy", "mode": "max"}, {"metric": "sparsity", "mode": "max"}]


def _space(tmp: Path, name: str = "st", **kw: Any) -> Any:
    data = {"name": name, "objectives": TWO, "sampler": {"name": "random", "seed": 0},
            "fixed": FIXED, "params": {"prune.sparsity": {"type": "float", "low": 0.3,
                                                          "high": 0.95}},
            "storage": str(tmp / name), "wandb": {"mode": "disabled"}}
    return parse_space({**data, **kw})


def journal(path: str | Path) -> optuna.storages.JournalStorage:
    """The study file opened with plain Optuna, as a user would."""
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


# ----------------------------------------------------------------------------- storage config
def test_storage_defaults_and_choices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # default: a journal file under the results directory
    assert study_location(_space(tmp_path)) == str(tmp_path / "st" / "study.log")
    assert study_location(_space(tmp_path, storage=None)) == str(
        tmp_path / "results" / "st" / "study.log")
    # results in object storage: the study stays on the driver, under ./results/<name>
    remote = _space(tmp_path, storage="s3://bucket/sweeps/st")
    assert study_location(remote) == "in-memory"  # nothing on the driver's disk: resumable
    assert isinstance(open_storage(remote), optuna.storages.InMemoryStorage)  # from anywhere
    # an explicit journal path (relative to the working directory) or an RDB URL
    assert study_location(_space(tmp_path, study={"storage": "here/s.log"})) == str(
        tmp_path / "here" / "s.log")
    url = f"sqlite:///{tmp_path}/study.db"
    assert study_location(_space(tmp_path, study={"storage": url})) == url
    with pytest.raises(ConfigError, match=r"study.storage: 's3://' is not an Optuna storage"):
        _space(tmp_path, study={"storage": "s3://bucket/study.log"})


def test_a_fresh_sweep_refuses_a_study_of_its_name(tmp_path: Path) -> None:
    space = _space(tmp_path)
    storage = open_storage(space)
    new_study(space, storage, space.make_sampler())
    # empty (a start that failed before any trial): replaced
    study = new_study(space, storage, space.make_sampler())
    study.ask()
    with pytest.raises(ConfigError, match=r"already holds a study named 'st' with 1 trials: "
                                          r"pass --resume"):
        new_study(space, storage, space.make_sampler())
    # another name, the same file: a second study beside the first
    other = _space(tmp_path, study={"name": "st-2", "storage": study_location(space)})
    new_study(other, open_storage(other), other.make_sampler())
    assert sorted(optuna.study.get_all_study_names(journal(study_location(space)))) == [
        "st", "st-2"]


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_searcher_tells_optuna_what_the_rows_say(tmp_path: Path, kind: str) -> None:
    """Ray's OptunaSearch (through StudySearch) on a stored study: ok -> COMPLETE with the
    final values; no final report (stopped by the scheduler) -> PRUNED; diverged and errors
    -> FAIL. Every trial carries its Ray trial id. Save/restore (what --resume does) continues
    the same study: the trial still running is told once, and no trial is added."""
    study_cfg = {} if kind == "journal" else {"storage": f"sqlite:///{tmp_path}/s.db"}
    space = _space(tmp_path, study=study_cfg)
    storage = open_storage(space)
    sampler = space.make_sampler()
    new_study(space, storage, sampler)
    search = _search(space, storage, sampler)
    configs = {tid: search.suggest(tid) for tid in ("ok", "stopped", "diverged", "error", "run")}
    epoch = {"test_accuracy": 0.4, "sparsity": 0.5, "progress": 333}
    search.on_trial_complete("ok", {**epoch, "test_accuracy": 0.8, "final": True,
                                    "result_status": "ok"})
    search.on_trial_complete("stopped", epoch)
    search.on_trial_complete("diverged", {**epoch, "final": True, "result_status": "diverged"})
    search.on_trial_complete("error", error=True)
    search.save(str(tmp_path / "searcher.pkl"))

    # a new process would rebuild the searcher and restore its state (Tuner.restore)
    restored = _search(space, open_storage(space), space.make_sampler())
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_complete("run", {"test_accuracy": 0.7, "sparsity": 0.6, "final": True,
                                       "result_status": "ok"})

    plain = journal(study_location(space)) if kind == "journal" else study_cfg["storage"]
    trials = optuna.load_study(study_name="st", storage=plain).get_trials()
    by_id = {t.user_attrs["trial_id"]: t for t in trials}
    assert len(trials) == 5 and set(by_id) == set(configs)
    assert {k: t.state for k, t in by_id.items()} == {
        "ok": TrialState.COMPLETE, "stopped": TrialState.PRUNED, "diverged": TrialState.FAIL,
        "error": TrialState.FAIL, "run": TrialState.COMPLETE}
    assert by_id["ok"].values == [0.8, 0.5] and by_id["run"].values == [0.7, 0.6]
    assert by_id["stopped"].values is None
    for tid, cfg in configs.items():
        assert by_id[tid].params == {"prune/sparsity": cfg["prune"]["sparsity"]}


# ----------------------------------------------------------------------------- real sweeps
def _check_study_matches_rows(study: optuna.Study, rows: list[dict[str, Any]]) -> None:
    trials = study.get_trials()
    by_id = {t.user_attrs["trial_id"]: t for t in trials}
    assert len(by_id) == len(trials) == len(rows)  # one Optuna trial per row, none duplicated
    state = {"ok": TrialState.COMPLETE, "stopped_early": TrialState.PRUNED}
    for r in rows:
        t = by_id[r["trial_id"]]
        assert t.state == state[r["status"]], (r["trial_id"], r["status"], t.state)
        assert t.params == {"prune/sparsity": r["config.prune.sparsity"]}
        if r["status"] == "ok":  # the very numbers in the Parquet row
            assert t.values == [r["test_accuracy"], r["sparsity"]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dashboard_studies(study_file: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Start the real ``optuna-dashboard STUDY_FILE`` (as docs/sweeps.md says) and read its
    study list and first study over HTTP."""
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert exe is not None, "optuna-dashboard is not installed (it is in .[dev]: scripts/setup.sh)"
    port = _free_port()
    proc = subprocess.Popen([exe, str(study_file), "--host", "127.0.0.1", "--port", str(port),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                    studies = json.loads(r.read())["study_summaries"]
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"optuna-dashboard did not serve: "
                                         f"{proc.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.3)
        sid = studies[0]["study_id"]
        with urllib.request.urlopen(f"{base}/api/studies/{sid}", timeout=30) as r:
            detail = json.loads(r.read())
        return studies, detail
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_sweep_study_is_public_and_matches_the_rows(tmp_path: Path, ray_local: None) -> None:
    """A real sweep with ASHA: the study file opens with plain Optuna and in optuna-dashboard,
    and holds exactly the Parquet rows: stopped trials PRUNED, completed ones COMPLETE with
    the rows' values; Optuna's front is prunetune's. --resume reuses it, adding nothing."""
    space = _space(tmp_path, name="asha", sampler={"name": "grid", "seed": 0},
                   # the screen off: the 0.99x trials train (at chance) so ASHA stops them
                   budget={"num_samples": 6, "max_concurrent": 1,
                           "screen": {"enabled": False}},
                   scheduler={"metric": "test_accuracy", "mode": "max", "grace_period": 1},
                   params={"prune.sparsity": {"type": "choice",
                                              "values": [0.1, 0.2, 0.3, 0.997, 0.998, 0.999]}})
    outcome = run_sweep(space)
    rows = TrialStore(outcome.results_dir).dataframe().to_dict("records")
    assert len(rows) == 6
    assert sum(r["status"] == "stopped_early" for r in rows) >= 1  # ASHA did stop some
    study_file = Path(outcome.results_dir) / "study.log"
    study = optuna.load_study(study_name="asha", storage=journal(study_file))
    _check_study_matches_rows(study, rows)
    # Optuna's own front (COMPLETE trials only) is prunetune's front of the ok rows
    ok = [r for r in rows if r["status"] == "ok"]
    import pandas as pd

    front = pareto_front(pd.DataFrame(ok), ["test_accuracy:max", "sparsity:max"])
    assert {t.user_attrs["trial_id"] for t in study.best_trials} == set(front["trial_id"])

    # --resume of the finished sweep loads the same study and adds no trial
    again = run_sweep(space, resume=True)
    assert again.rows == 6
    after = optuna.load_study(study_name="asha", storage=journal(study_file))
    assert len(after.get_trials()) == 6
    _check_study_matches_rows(after, rows)

    studies, detail = _dashboard_studies(study_file)
    assert [s["study_name"] for s in studies] == ["asha"]
    states = sorted(t["state"] for t in detail["trials"])
    assert states == sorted("Complete" if r["status"] == "ok" else "Pruned" for r in rows)


SPACE = """\
name: cut
objectives: [{metric: test_accuracy, mode: max}, {metric: sparsity, mode: max}]
sampler: {name: random, seed: 0}
budget: {num_samples: 4, max_concurrent: 2}
fixed:
  model: {name: mlp, options: {hidden: [32, 16]}}
  data: {name: digits}
  train: {epochs: 20, optimizer: adam, lr: 0.01, device: cpu}
params:
  prune.sparsity: {type: float, low: 0.3, high: 0.95}
storage: res
wandb: {mode: disabled}
"""


@pytest.mark.slow
def test_ctrl_c_then_resume_finishes_the_same_study(tmp_path: Path) -> None:
    """Ctrl-C part-way, then ``--resume``: the trials cut short are finished on the same
    Optuna trials (no duplicate, none left running), and the study matches the rows."""
    space = write_space(tmp_path / "space.yaml", SPACE)
    results = tmp_path / "res"
    proc = cli("sweep", str(space), "--num-cpus", "2", cwd=tmp_path)
    try:
        deadline = time.time() + 180
        while not list((results / "trials").glob("*.parquet")):
            assert proc.poll() is None and time.time() < deadline, "no row in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        kill_session(proc.pid)
    cut = optuna.load_study(study_name="cut", storage=journal(results / "study.log"))
    running = [t for t in cut.get_trials() if t.state == TrialState.RUNNING]
    assert running, "the stop cut no trial short (nothing to resume)"

    resumed = cli("sweep", str(space), "--resume", "--num-cpus", "2", cwd=tmp_path)
    try:
        out, _ = resumed.communicate(timeout=300)
    finally:
        kill_session(resumed.pid)
    assert resumed.returncode == 0, out
    rows = TrialStore(str(results)).dataframe()
    assert len(rows) == 4 and set(rows["status"]) == {"ok"}
    study = optuna.load_study(study_name="cut", storage=journal(results / "study.log"))
    _check_study_matches_rows(study, rows.to_dict("records"))
    # the Optuna trials that were running at the stop are the ones finished by the resume
    done = {t.number: t.state for t in study.get_trials()}
    assert all(done[t.number] == TrialState.COMPLETE for t in running)


def test_a_trial_the_study_already_finished_is_not_told_twice(tmp_path: Path) -> None:
    """A driver killed after it told the study (a file written at once) but before Ray's
    experiment snapshot: the resumed sweep re-runs the trial from an older searcher state and
    reports to an Optuna trial that is already COMPLETE. That must not crash the sweep (it did,
    with UpdateFinishedTrialError), and the study keeps the first outcome."""
    space = _space(tmp_path, study={"storage": f"sqlite:///{tmp_path}/s.db"},
                   objectives=[{"metric": "test_accuracy", "mode": "max"}])  # reports per epoch
    storage = open_storage(space)
    sampler = space.make_sampler()
    new_study(space, storage, sampler)
    search = _search(space, storage, sampler)
    search.suggest("t0")
    search.save(str(tmp_path / "searcher.pkl"))  # Ray's last snapshot: t0 running
    final = {"test_accuracy": 0.8, "sparsity": 0.5, "final": True, "result_status": "ok"}
    search.on_trial_complete("t0", final)  # told, then the driver is killed

    restored = _search(space, open_storage(space), space.make_sampler())
    restored.restore(str(tmp_path / "searcher.pkl"))
    restored.on_trial_result("t0", {"test_accuracy": 0.5, "sparsity": 0.5,
                                    "training_iteration": 1})
    restored.on_trial_complete("t0", {**final, "test_accuracy": 0.7})
    (t,) = optuna.load_study(study_name="st", storage=f"sqlite:///{tmp_path}/s.db").get_trials()
    assert t.state == TrialState.COMPLETE and t.values == [0.8]


def test_a_trial_the_restored_searcher_never_asked_is_recorded_not_told(tmp_path: Path) -> None:
    """After a driver SIGKILL, Ray's experiment snapshot can hold a trial that the searcher's
    older snapshot never asked (tests/infra/test_faults.py hit it about one run in three): its
    reports must not crash the resumed sweep (Ray's OptunaSearch raised KeyError)."""
    from sweeps.tune.study import StudySearch, new_study, open_storage, study_name
    from sweeps.tune.trainable import FINAL_FLAG, RESULT_STATUS

    space = _space(tmp_path)
    storage, sampler = open_storage(space), space.make_sampler()
    new_study(space, storage, sampler)
    search = StudySearch(space.define_by_run(), metric=space.metrics, mode=space.modes,
                         sampler=sampler, storage=storage, study_name=study_name(space))
    final = {FINAL_FLAG: True, RESULT_STATUS: "ok", "test_accuracy": 0.5, "sparsity": 0.5}
    search.on_trial_result("never-asked", {"test_accuracy": 0.5, "sparsity": 0.5})
    search.on_trial_complete("never-asked", final)
    assert search.suggest("asked") is not None
    search.on_trial_complete("asked", final)
    study = optuna.load_study(study_name=study_name(space), storage=storage)
    assert [t.user_attrs["trial_id"] for t in study.trials] == ["asked"]
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
