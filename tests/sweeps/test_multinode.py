"""A real two-node Ray cluster on this machine: ``ray start --head`` + ``ray start --address``
as separate processes; a sweep submitted with ``--address`` runs trials on both nodes.
(Both nodes share this machine's disk; a real cluster needs shared storage for results.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sweeps.results.store import TrialStore

from .conftest import cli, kill_session, write_space

pytestmark = pytest.mark.slow

SPACE = """\
name: multi
objectives: [{metric: test_accuracy, mode: max}]
sampler: {name: random, seed: 0}
budget: {num_samples: 6, max_concurrent: 2}
resources: {cpu: 1}
fixed:
  model: {name: mlp}
  data: {name: digits}
  train: {epochs: 3, optimizer: adam, lr: 0.01, device: cpu}
params:
  prune.sparsity: {type: float, low: 0.3, high: 0.9}
storage: res
wandb: {mode: disabled}
"""


# `ray start --head` turns on token auth; the joining node and `ray status` must send the token.
_ENV = {**os.environ, "RAY_AUTH_MODE": "token"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray(*args: str) -> subprocess.Popen[bytes]:
    ray_bin = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen([ray_bin, "start", "--block", "--disable-usage-stats", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=_ENV)


@pytest.fixture
def cluster() -> Iterator[str]:
    port = _free_port()
    head = _ray("--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                "--node-ip-address=127.0.0.1")
    procs = [head]
    try:
        time.sleep(4)
        procs.append(_ray(f"--address=127.0.0.1:{port}", "--num-cpus=1",
                          "--node-ip-address=127.0.0.1"))
        address = f"127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:  # wait until both nodes are alive
            out = subprocess.run([str(Path(sys.executable).with_name("ray")), "status",
                                  f"--address={address}"], capture_output=True, text=True,
                                 env=_ENV)
            if out.stdout.count("node_") >= 2:
                break
            time.sleep(1)
        yield address
    finally:
        for p in reversed(procs):  # `ray start --block` stops its own Ray processes on SIGTERM
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            kill_session(p.pid)


def test_sweep_on_two_nodes(tmp_path: Path, cluster: str) -> None:
    space = write_space(tmp_path / "space.yaml", SPACE)
    proc = cli("sweep", str(space), "--address", cluster, cwd=tmp_path)
    try:
        out, _ = proc.communicate(timeout=300)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 0, out
    df = TrialStore(str(tmp_path / "res")).dataframe()
    assert len(df) == 6 and set(df["status"]) == {"ok"}
    assert df["node_id"].nunique() == 2, df[["trial_id", "node_id"]]
