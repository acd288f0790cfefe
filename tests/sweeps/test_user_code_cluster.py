"""The user's own model and data, in a package only the driver's directory holds, swept on a
real two-node Ray cluster (`ray start --head` + a worker started from another directory with a
clean PYTHONPATH): `--working-dir` ships the code to every worker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweeps.results.store import TrialStore

from .conftest import kill_session, write_space
from .test_multinode import _ENV, _free_port

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]

SPACE = """\
name: usercode
objectives: [{metric: test_accuracy, mode: max}]
sampler: {name: random, seed: 0}
budget: {num_samples: 4, max_concurrent: 2}
resources: {cpu: 1}
fixed:
  model: {name: "tmpnets_xyz.nets:build", options: {hidden: 24}, weights: trained.safetensors}
  data: {name: "tmpnets_xyz.data:load"}
  train: {epochs: 2, optimizer: sgd, lr: 0.05, device: cpu}
  prune: {criterion: magnitude, timing: {name: after, pretrain_epochs: 0}}
params:
  prune.sparsity: {type: float, low: 0.3, high: 0.9}
storage: res
wandb: {mode: disabled}
"""

NETS = """\
from torch import nn

def build(input_shape, num_classes, hidden=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))
"""

DATA = """\
import torch
from torch.utils.data import TensorDataset

def load(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(300, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long()
    return {"train": TensorDataset(x[:200], y[:200]), "test": TensorDataset(x[200:], y[200:]),
            "input_shape": (1, 8, 8), "num_classes": 2}
"""


def _ray(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in _ENV.items() if k != "PYTHONPATH"}  # a clean PYTHONPATH
    ray_bin = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen([ray_bin, "start", "--block", "--disable-usage-stats", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env, cwd=cwd)


def test_user_factories_reach_every_worker(tmp_path: Path) -> None:
    driver_dir, elsewhere = tmp_path / "driver", tmp_path / "elsewhere"
    (driver_dir / "tmpnets_xyz").mkdir(parents=True)
    elsewhere.mkdir()
    (driver_dir / "tmpnets_xyz" / "__init__.py").write_text("")
    (driver_dir / "tmpnets_xyz" / "nets.py").write_text(textwrap.dedent(NETS))
    (driver_dir / "tmpnets_xyz" / "data.py").write_text(textwrap.dedent(DATA))
    space = write_space(driver_dir / "space.yaml", SPACE)
    # the user's trained checkpoint, next to their code (a relative model.weights path)
    sys.path.insert(0, str(driver_dir))
    try:
        import torch
        from safetensors.torch import save_file
        from tmpnets_xyz.nets import build  # type: ignore[import-not-found]

        torch.manual_seed(7)
        trained = build((1, 8, 8), 2, hidden=24)
        save_file(trained.state_dict(), str(driver_dir / "trained.safetensors"))
    finally:
        sys.path.remove(str(driver_dir))
    port = _free_port()
    procs = [_ray("--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                  "--node-ip-address=127.0.0.1", cwd=elsewhere)]
    try:
        import time

        time.sleep(4)
        procs.append(_ray(f"--address=127.0.0.1:{port}", "--num-cpus=1",
                          "--node-ip-address=127.0.0.1", cwd=elsewhere))
        time.sleep(6)
        env = {**os.environ, "WANDB_SILENT": "true", "RAY_AUTH_MODE": "token"}
        env.pop("PYTHONPATH", None)
        sweep = subprocess.Popen(
            [str(Path(sys.executable).with_name("prunetune")), "sweep", str(space), "--address",
             f"127.0.0.1:{port}", "--working-dir", str(driver_dir)],
            cwd=driver_dir, env=env, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(sweep)
        out, _ = sweep.communicate(timeout=400)
        assert sweep.returncode == 0, out
        df = TrialStore(str(driver_dir / "res")).dataframe()
        assert len(df) == 4 and set(df["status"]) == {"ok"}, df[["status", "error"]]
        assert df["node_id"].nunique() == 2  # both nodes imported the package
        assert (df["params"] == 64 * 24 + 24 + 24 * 2 + 2).all()  # the factory's model (hidden 24)
        # the loaded checkpoint was pruned (magnitude, no dense training): kept weights are the
        # trained ones' largest, so every trial's kept count matches its target sparsity
        assert ((df["sparsity"] - df["config.prune.sparsity"]).abs() < 0.01).all()

        # the same from Python: run_sweep(model_fn=, data_fn=) in a driver script
        (driver_dir / "drive.py").write_text(textwrap.dedent(f"""\
            import sys
            from sweeps.tune.launch import run_sweep
            from sweeps.tune.space import load_space
            from tmpnets_xyz.data import load
            from tmpnets_xyz.nets import build
            space = load_space("space.yaml").model_copy(update={{"name": "usercode_py"}})
            space = space.model_copy(update={{"storage": "res_py"}})
            out = run_sweep(space, address="127.0.0.1:{port}", model_fn=build, data_fn=load,
                            working_dir=".")
            sys.exit(0 if out.counts == {{"ok": 4}} else 1)
            """))
        py = subprocess.run([sys.executable, "drive.py"], cwd=driver_dir, env={
            **env, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=400)
        assert py.returncode == 0, py.stdout[-2000:] + py.stderr[-3000:]
        dfp = TrialStore(str(driver_dir / "res_py")).dataframe()
        assert len(dfp) == 4 and dfp["node_id"].nunique() == 2
        assert set(dfp["config.model.name"]) == {"tmpnets_xyz.nets:build"}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            kill_session(p.pid)


def test_python_api_takes_factory_callables(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from sweeps.tune.launch import run_sweep
    from sweeps.tune.space import parse_space

    (tmp_path / "tmpnets_api").mkdir()
    (tmp_path / "tmpnets_api" / "__init__.py").write_text("")
    (tmp_path / "tmpnets_api" / "nets.py").write_text(textwrap.dedent(NETS))
    (tmp_path / "tmpnets_api" / "data.py").write_text(textwrap.dedent(DATA))
    monkeypatch.syspath_prepend(str(tmp_path))
    nets = importlib.import_module("tmpnets_api.nets")
    data = importlib.import_module("tmpnets_api.data")
    space = parse_space({
        "name": "api", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "budget": {"num_samples": 2, "max_concurrent": 2},
        "fixed": {"model": {"options": {"hidden": 8}},
                  "train": {"epochs": 1, "optimizer": "sgd", "lr": 0.05, "device": "cpu"}},
        "params": {"prune.sparsity": {"type": "float", "low": 0.3, "high": 0.9}},
        "storage": str(tmp_path / "res"), "wandb": {"mode": "disabled"}})
    outcome = run_sweep(space, model_fn=nets.build, data_fn=data.load,
                        working_dir=str(tmp_path))
    df = TrialStore(outcome.results_dir).dataframe()
    assert len(df) == 2 and set(df["status"]) == {"ok"}, df[["status", "error"]]
    assert set(df["config.model.name"]) == {"tmpnets_api.nets:build"}
    assert (df["params"] == 64 * 8 + 8 + 8 * 2 + 2).all()
