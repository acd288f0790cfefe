"""Live W&B runs: each trial logs from its Ray worker as epochs happen, and the end of the sweep
adds Pareto flags to every run. Real Ray, real offline W&B runs read back from disk."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sweeps.results.store import TrialStore
from sweeps.tune.launch import run_sweep
from sweeps.tune.space import parse_space
from sweeps.tune.wandb_log import TrialRun, WandbTarget, front_ranks, sweep_flags
from sweeps.tune.wandb_sink import WandbSink

from .conftest import offline_run_id

REPO = Path(__file__).resolve().parents[2]
OBJECTIVES = [{"metric": "test_accuracy", "mode": "max"}, {"metric": "sparsity", "mode": "max"}]


# --------------------------------------------------------------------------- reading runs back
def _records(path: Path) -> list[Any]:
    """The records of an offline run's ``run-<id>.wandb`` (W&B's transaction log: a 7-byte
    ``:W&B`` header, then LevelDB-log records in 32 KiB blocks, each a protobuf ``Record``)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    out, pos, buf, block = [], 7, b"", 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and n == 0:
            pos += left
            continue
        payload, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind == 1:
            out.append(payload)
        elif kind == 2:
            buf = payload
        elif kind == 3:
            buf += payload
        elif kind == 4:
            out.append(buf + payload)
    recs = []
    for raw in out:
        r = pb.Record()
        r.ParseFromString(raw)
        recs.append(r)
    return recs


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(run_dir: Path) -> dict[str, Any]:
    """One offline run directory: its run record, config, history rows and final summary."""
    (log,) = run_dir.glob("run-*.wandb")
    info: dict[str, Any] = {"history": [], "summary": {}, "config": {}}
    for r in _records(log):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info["run_id"], info["group"] = r.run.run_id, r.run.run_group
            info["config"].update({_key(i): json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "history":
            info["history"].append({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            info["summary"].update({_key(i): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "config":
            info["config"].update({_key(i): json.loads(i.value_json) for i in r.config.update})
    return info


def runs_by_id(results: Path) -> dict[str, list[dict[str, Any]]]:
    """Offline runs under ``<results>/wandb`` by run id, each id's directories oldest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for d in sorted((results / "wandb").glob("offline-run-*")):
        out.setdefault(offline_run_id(d.name), []).append(read_run(d))
    return out


# --------------------------------------------------------------------------- injected work
class SlowEpochs:
    """The real experiment, each epoch taking at least ``delay`` s more; records when each
    epoch was reported (a module: Ray workers import it)."""

    def __init__(self, log_dir: str, delay: float) -> None:
        self.log_dir, self.delay = log_dir, delay

    def __call__(self, cfg: Any, on_epoch: Any = None, resume: Any = None) -> Any:
        from pruning_core.trials.experiment import run

        log = Path(self.log_dir, f"{cfg.tags['trial_id']}.jsonl")

        def wrapped(report: Any) -> None:
            time.sleep(self.delay)
            with log.open("a") as f:
                f.write(json.dumps({"epoch": report.epoch, "t": time.time()}) + "\n")
            on_epoch(report)

        return run(cfg, on_epoch=wrapped, resume=resume)


def _children(pid: int, name: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid and comm == name:
            out.append(int(p.name))
    return out


class KillWandbCore:
    """The real experiment; in the first trial only, after epoch 1, SIGKILL this worker's
    wandb-core (W&B breaks mid-trial)."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir

    def __call__(self, cfg: Any, on_epoch: Any = None, resume: Any = None) -> Any:
        from pruning_core.trials.experiment import run

        marker = Path(self.log_dir, "killed")

        def wrapped(report: Any) -> None:
            on_epoch(report)
            if report.epoch == 1 and not marker.exists():
                pids = _children(os.getpid(), "wandb-core")
                marker.write_text(json.dumps({"trial_id": cfg.tags["trial_id"], "pids": pids}))
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)

        return run(cfg, on_epoch=wrapped, resume=resume)


def _space(tmp: Path, name: str, **kw: Any) -> Any:
    return parse_space({
        "name": name, "objectives": OBJECTIVES, "sampler": {"name": "random", "seed": 0},
        "budget": {"num_samples": 2, "max_concurrent": 2},
        "fixed": {"model": {"name": "mlp", "options": {"hidden": [32]}},
                  "data": {"name": "digits", "train_limit": 300},
                  "train": {"epochs": 3, "optimizer": "sgd", "device": "cpu"},
                  "prune": {"criterion": "magnitude"}},
        "params": {"prune.sparsity": {"type": "float", "low": 0.3, "high": 0.95}},
        "storage": str(tmp / "res"), "wandb": {"mode": "offline"}, **kw})


# --------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_trials_log_live_and_runs_get_pareto_flags(tmp_path: Path, ray_local: None) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    out = run_sweep(_space(tmp_path, "wblive"), run_fn=SlowEpochs(str(logs), delay=1.0))
    assert out.rows == 2 and out.counts == {"ok": 2}
    rows = TrialStore(out.results_dir).dataframe().set_index("trial_id")
    runs = runs_by_id(Path(out.results_dir))
    assert set(runs) == {f"wblive-{t}" for t in rows.index} | {"wblive-summary"}
    for trial_id, row in rows.iterrows():
        live, *updates = runs[f"wblive-{trial_id}"]
        assert len(updates) == 1  # one run dir written by the worker, one flags update
        assert live["group"] == "wblive"
        assert live["config"]["prune"]["sparsity"] == pytest.approx(row["config.prune.sparsity"])
        # one history row per epoch, at step = epoch, logged as each epoch ended
        hist = live["history"]
        assert [h["_step"] for h in hist] == [1, 2, 3] == [h["epoch"] for h in hist]
        assert [h["test_accuracy"] for h in hist] == pytest.approx(
            [e["test_accuracy"] for e in json.loads(row["history"])]
            if isinstance(row["history"], str) else [e["test_accuracy"] for e in row["history"]])
        reported = [json.loads(x) for x in (logs / f"{trial_id}.jsonl").read_text().splitlines()]
        trained = reported[-1]["t"] - reported[0]["t"]  # epochs 1 -> 3: >= 2 delays
        assert trained >= 2.0
        span = hist[-1]["_timestamp"] - hist[0]["_timestamp"]
        assert span >= trained - 0.5, (span, trained)  # a replay at the end spans ~0 s
        for h, r in zip(hist, reported, strict=True):  # each logged within 1 s of its epoch
            assert abs(h["_timestamp"] - r["t"]) < 1.0
        assert live["summary"]["test_accuracy"] == pytest.approx(row["test_accuracy"])
        assert live["summary"]["status"] == "ok"
    # the flags match prunetune pareto on the same results
    cli = subprocess.run(
        [sys.executable, "-m", "sweeps.cli", "pareto", out.results_dir, "-o", "test_accuracy:max",
         "-o", "sparsity:max", "--format", "json"],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True)
    front = json.loads(cli.stdout)
    front_ids = {r["trial_id"] for r in front["rows"]}
    summaries = {t: {k: v for run in runs[f"wblive-{t}"] for k, v in run["summary"].items()}
                 for t in rows.index}
    assert {t for t, s in summaries.items() if s["pareto"]} == front_ids
    for t, s in summaries.items():
        assert (s["front_rank"] == 0) == (t in front_ids)
        assert s["front_rank"] in (0, 1)
        assert s["hypervolume"] == pytest.approx(front["hypervolume"]["all"])
        assert s["test_accuracy"] == pytest.approx(rows.loc[t, "test_accuracy"])
    (summary_run,) = runs["wblive-summary"]
    assert summary_run["summary"]["n_trials"] == 2
    assert summary_run["summary"]["hypervolume"] == pytest.approx(front["hypervolume"]["all"])


@pytest.mark.slow
def test_killed_wandb_core_never_fails_a_trial(tmp_path: Path, ray_local: None) -> None:
    """SIGKILL the worker's wandb-core after epoch 1: the trial goes on and ends ``ok`` with its
    row; the next trial on the same (reused) worker gets a fresh W&B service and a whole run."""
    logs = tmp_path / "logs"
    logs.mkdir()
    space = _space(tmp_path, "wbkill", budget={"num_samples": 2, "max_concurrent": 1})
    out = run_sweep(space, run_fn=KillWandbCore(str(logs)))
    assert out.rows == 2 and out.counts == {"ok": 2}
    rows = TrialStore(out.results_dir).dataframe().set_index("trial_id")
    assert (rows["last_epoch"] == 3).all()
    killed = json.loads((logs / "killed").read_text())
    assert killed["pids"], "the worker had no wandb-core to kill"
    runs = runs_by_id(Path(out.results_dir))
    broken = runs[f"wbkill-{killed['trial_id']}"][0]
    assert len(broken["history"]) < 3  # W&B really broke for that trial
    (other,) = set(rows.index) - {killed["trial_id"]}
    assert [h["_step"] for h in runs[f"wbkill-{other}"][0]["history"]] == [1, 2, 3]


def test_worker_wandb_core_dies_with_a_killed_worker(tmp_path: Path) -> None:
    """A SIGKILLed worker (Ray kills workers at shutdown) leaves no wandb-core behind."""
    code = (f"import time; from sweeps.tune.wandb_log import TrialRun, WandbTarget\n"
            f"r = TrialRun(WandbTarget('s', 'p', {str(tmp_path)!r}), 't1', {{'a': 1}})\n"
            f"assert r.active; r.log({{'x': 1.0}}, 1)\nprint('ready', flush=True)\n"
            f"time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        cores = _children(proc.pid, "wandb-core")
        assert len(cores) == 1
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{cores[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{cores[0]}").exists(), "wandb-core outlived its worker"
    finally:
        proc.kill()


def test_front_ranks_are_non_dominated_sorting() -> None:
    v = np.array([[0.9, 0.5], [0.8, 0.9], [0.7, 0.4], [0.6, 0.3], [np.nan, 1.0], [0.9, 0.5]])
    assert front_ranks(v, ["max", "max"]).tolist() == [0, 0, 1, 2, -1, 0]
    assert front_ranks(v[:, :1], ["min"]).tolist() == [3, 2, 1, 0, -1, 3]


def test_sink_flags_offline_runs_written_by_trials(tmp_path: Path) -> None:
    """Without Ray: two trial runs written as a worker writes them, then the sink's flags."""
    target = WandbTarget("s", "p", str(tmp_path))
    for t, acc in (("t0", 0.9), ("t1", 0.5)):
        run = TrialRun(target, t, {"prune": {"sparsity": 0.5}})
        run.log({"test_accuracy": acc}, 1)
        run.finish({"test_accuracy": acc, "sparsity": 0.5})
        assert not run.failed
    rows = [{"trial_id": "t0", "status": "ok", "test_accuracy": 0.9, "sparsity": 0.5},
            {"trial_id": "t1", "status": "ok", "test_accuracy": 0.5, "sparsity": 0.5},
            {"trial_id": "t2", "status": "error", "test_accuracy": None, "sparsity": None}]
    sink = WandbSink("s", "p", str(tmp_path), space={"objectives": OBJECTIVES})
    sink.sweep_finished(rows)
    sink.close()
    assert sink.failures == 0
    runs = runs_by_id(tmp_path)
    assert set(runs) == {"s-t0", "s-t1", "s-summary"}  # t2 had no run: not created
    flags = sweep_flags(rows, [("test_accuracy", "max"), ("sparsity", "max")])
    assert flags.ranks == {"t0": 0, "t1": 1}
    assert runs["s-t0"][-1]["summary"]["pareto"] is True
    assert runs["s-t1"][-1]["summary"] == {**runs["s-t1"][-1]["summary"], "pareto": False,
                                           "front_rank": 1, "hypervolume": flags.hypervolume}
    assert runs["s-summary"][0]["summary"]["n_error"] == 1


@pytest.mark.parametrize(("dirname", "run_id"), [
    ("offline-run-20261123_150102-wbkill-70409461", "wbkill-70409461"),  # an all-digit id
    ("offline-run-20261123_150102-wbkill-70409461-1", "wbkill-70409461"),  # reopened
    ("offline-run-20261123_150102-e2e-3fa0b9c2", "e2e-3fa0b9c2"),
    ("offline-run-20261123_150102-e2e-summary-2", "e2e-summary"),
    ("offline-run-20261123_150102-my-sweep-deadbeef-00000001", "my-sweep-deadbeef-00000001"),
    ("offline-run-20261123_150102-s-t1", "s-t1"),  # the tests' own short trial ids
    ("offline-run-20261123_150102-s-t1-1", "s-t1"),  # CI: reopened within the same second
])
def test_offline_run_ids_are_read_back_from_directory_names(dirname: str, run_id: str) -> None:
    """CI once failed here: a trial id of 8 decimal digits was stripped as W&B's "-N"."""
    assert offline_run_id(dirname) == run_id
