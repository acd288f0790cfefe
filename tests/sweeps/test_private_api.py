"""Issue 12, item 3: prunetune uses Ray and Optuna through public APIs, but for one isolated
call (``ray_env.driver_cluster_switch``), whose behaviour is pinned here so that a Ray upgrade
that changes it fails loudly. Real Ray, nothing mocked."""

from __future__ import annotations

import ast
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from sweeps.results.store import TrialStore
from sweeps.tune.launch import LiveCallbacks, run_sweep
from sweeps.tune.space import parse_space

REPO = Path(__file__).resolve().parents[2]

#: private attributes of Ray / Optuna objects prunetune once used
PRIVATE_ATTRS = {"_ot_study", "_local_tuner", "_contains", "_ot_trials", "_private"}


def _private_uses(tree: ast.AST) -> list[str]:
    """Code (not docstrings) touching Ray's / Optuna's private names."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRS:
            out.append(f"attribute {node.attr}")
        elif isinstance(node, ast.keyword) and node.arg == "_node_ip_address":
            out.append("argument _node_ip_address")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
                "ray", "optuna"):
            parts = [*node.module.split("."), *(a.name for a in node.names)]  # type: ignore[union-attr]
            if any(p.startswith("_") for p in parts):
                out.append(f"import from {node.module}")
    return out


def test_no_private_ray_or_optuna_use_outside_the_isolated_call() -> None:
    hits = []
    for path in sorted((REPO / "sweeps").rglob("*.py")):
        for use in _private_uses(ast.parse(path.read_text())):
            hits.append(f"{path.relative_to(REPO)}: {use}")
    assert hits == ["sweeps/tune/journal.py: import from optuna.storages.journal._file",
                    "sweeps/tune/ray_env.py: import from ray._private"], hits


def test_the_journal_backend_still_matches_optunas_file_backend(tmp_path) -> None:
    """``SweepJournalBackend`` (the journal's fsync off the driver's loop) reuses Optuna's file
    lock helper and the backend's ``_lock`` / ``_file_path``: private, so this fails loudly
    when Optuna changes them. A study written through it reads back with the plain backend."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    from sweeps.results.syncer import flush
    from sweeps.tune.journal import SweepJournalBackend

    path = str(tmp_path / "study.log")
    backend = SweepJournalBackend(path)
    assert hasattr(backend, "_lock") and backend._file_path == path
    study = optuna.create_study(study_name="s", storage=JournalStorage(backend))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    flush()
    again = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(path)))
    assert [t.params for t in again.trials] == [t.params for t in study.trials]


PROBE = """
import json, os
import ray.util
from ray._private import ray_constants
from sweeps.tune.ray_env import LOOPBACK_SWITCH, loopback_only

before = ray_constants.ENABLE_RAY_CLUSTER
with loopback_only() as on:
    inside = {"on": on, "ip": ray.util.get_node_ip_address(),
              "flag": ray_constants.ENABLE_RAY_CLUSTER, "env": os.environ.get(LOOPBACK_SWITCH)}
after = {"flag": ray_constants.ENABLE_RAY_CLUSTER, "env": os.environ.get(LOOPBACK_SWITCH)}
print(json.dumps({"before": before, "inside": inside, "after": after}))
"""


def test_ray_still_reads_the_isolated_cluster_switch() -> None:
    """What ``driver_cluster_switch`` relies on: Ray keeps the switch as a bool constant that
    ``ray.util.get_node_ip_address`` (so ``ray.init``'s node address) reads at call time."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(Path.home()),
           "RAY_USAGE_STATS_ENABLED": "0"}
    p = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["before"] is True  # Linux: multi-node on by default
    assert out["inside"] == {"on": True, "ip": "127.0.0.1", "flag": False, "env": "0"}
    assert out["after"] == {"flag": True, "env": None}  # restored


def test_embedded_ray_node_is_loopback_without_private_init_args(ray_local: None) -> None:
    import ray

    assert ray.util.get_node_ip_address() == "127.0.0.1"
    assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]


def test_live_callbacks_forward_every_tune_hook() -> None:
    hooks = {n for n in vars(tune.Callback) if n.startswith("on_") or n == "setup"}
    assert hooks >= {"setup", "on_trial_result", "on_trial_complete", "on_experiment_end"}
    assert hooks <= set(vars(LiveCallbacks))  # Tune's metaclass also refuses a missing one
    seen: list[tuple[str, Any]] = []

    class Probe(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                              **info: Any) -> None:
            seen.append(("complete", trial))

    copy = pickle.loads(pickle.dumps(LiveCallbacks()))  # what tuner.pkl gives back
    with LiveCallbacks.serving([Probe()]):
        copy.on_trial_complete(iteration=1, trials=[], trial="t1")
    copy.on_trial_complete(iteration=2, trials=[], trial="t2")  # nothing served: no-op
    assert seen == [("complete", "t1")]


class Count(tune.Callback):
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def setup(self, **info: Any) -> None:
        self.calls["setup"] = self.calls.get("setup", 0) + 1

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.calls["complete"] = self.calls.get("complete", 0) + 1

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.calls["end"] = self.calls.get("end", 0) + 1


@pytest.mark.slow
def test_resume_runs_this_processes_callbacks(tmp_path: Path, ray_local: None) -> None:
    """``Tuner.restore`` takes no callbacks; the restored run config's forwarder reaches the
    callbacks of the resuming call (not the pickled copies of the first run's)."""
    space = parse_space({
        "name": "cb", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "sampler": {"name": "random", "seed": 0}, "budget": {"num_samples": 1},
        "fixed": {"model": {"name": "mlp", "options": {"hidden": [16]}},
                  "data": {"name": "digits", "train_limit": 200, "test_limit": 100},
                  "train": {"epochs": 1, "device": "cpu"}},
        "params": {"prune.sparsity": {"type": "float", "low": 0.3, "high": 0.9}},
        "storage": str(tmp_path / "cb"), "wandb": {"mode": "disabled"}})
    first = Count()
    assert run_sweep(space, callbacks=[first]).rows == 1
    assert first.calls == {"setup": 1, "complete": 1, "end": 1}
    second = Count()
    again = run_sweep(space, resume=True, callbacks=[second])
    assert again.rows == 1 and len(TrialStore(again.results_dir).trial_ids()) == 1
    assert second.calls.get("setup") == 1 and second.calls.get("end") == 1
    assert first.calls == {"setup": 1, "complete": 1, "end": 1}  # the old ones: untouched


@pytest.mark.parametrize("name", ["tpe", "nsga2", "gp", "random", "grid"])
def test_every_sampler_pickles_as_ray_tune_saves_the_searcher(tmp_path: Path, name: str) -> None:
    """Ray Tune pickles the searcher, sampler included, at the start and in every experiment
    snapshot: Optuna 5.1.0's NSGA-II/III hold a threading.Lock and broke every such sweep
    (pyproject pins optuna below 5.1). Fails loudly if a sampler stops pickling again."""
    from ray import cloudpickle

    from sweeps.tune.space import SAMPLERS, parse_space

    assert set(SAMPLERS) == {"tpe", "nsga2", "gp", "random", "grid"}  # a new one: add it here
    space = parse_space({
        "name": "p", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "sampler": {"name": name, "seed": 0},
        "fixed": {"model": {"name": "mlp"}, "data": {"name": "digits"}},
        "params": {"prune.sparsity": {"type": "choice", "values": [0.5, 0.9]}},
        "storage": str(tmp_path / "r")})
    sampler = space.make_sampler()
    assert type(cloudpickle.loads(cloudpickle.dumps(sampler))) is type(sampler)
