"""Faults on a real multi-process Ray cluster: a head (no CPUs: the driver's node) and two
worker nodes, each its own ``ray start`` process; sweep storage on a real S3-compatible server
(moto, 127.0.0.1) that the test can restart. Token auth is on, with the test's own token.

- a worker node's raylet SIGKILLed mid-sweep: its trial is retried on the other node and the
  sweep ends with exactly ``num_samples`` rows;
- the driver SIGKILLed: ``--resume`` from a fresh directory holding only the space (its
  ``storage:`` is the S3 URI) finishes the sweep;
- the S3 server restarted mid-sweep (3 s) or down for 20 s: no row lost or duplicated, every
  trial ok (a refused report waits and retries inside the trial);
- the cluster listens on every interface and refuses clients without the right token.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from sweeps.results.store import TrialStore
from tests.sweeps.conftest import cli, kill_session, write_space

from .conftest import (
    CREDS,
    MARK,
    RAY,
    REPO,
    Cluster,
    S3Server,
    cluster_env,
    kill_marked,
    new_token,
    wait_gone,
)

pytestmark = pytest.mark.slow

NUM_SAMPLES = 6
SPACE = """\
name: {name}
objectives: [{{metric: test_accuracy, mode: max}}]
sampler: {{name: random, seed: 0}}
budget: {{num_samples: {n}, max_concurrent: 2, max_failures: {max_failures}}}
resources: {{cpu: 1}}
fixed:
  model: {{name: mlp, options: {{hidden: [32]}}}}
  data: {{name: digits}}
  train: {{epochs: {epochs}, optimizer: adam, lr: 0.01, device: cpu}}
params:
  prune.sparsity: {{type: float, low: 0.3, high: 0.9}}
storage: "{storage}"
wandb: {{mode: disabled}}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[Cluster]:
    mark = uuid.uuid4().hex
    env = cluster_env(tmp_path_factory.mktemp("cluster"), mark, new_token())
    c = Cluster(env, head_cpus=0, worker_cpus=1)
    try:
        c.start(workers=2)
        yield c
    finally:
        c.stop()
        left = wait_gone(mark, limit=20)
        kill_marked(mark)
        assert not left, f"processes of the cluster outlived it: {left}"


def space_file(d: Path, s3: S3Server, name: str, epochs: int = 4,
               max_failures: int = 2) -> tuple[Path, str]:
    d.mkdir(parents=True, exist_ok=True)
    uri = s3.uri(f"runs/{name}")
    path = write_space(d / "space.yaml", SPACE.format(name=name, n=NUM_SAMPLES, epochs=epochs,
                                                       storage=uri, max_failures=max_failures))
    return path, uri


def client_env(c: Cluster) -> dict[str, str]:
    keys = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", MARK, "WANDB_MODE", *CREDS)
    return {k: c.env[k] for k in keys}


def wait_rows(uri: str, n: int, proc: subprocess.Popen[str], timeout: float = 180) -> set[str]:
    store = TrialStore(uri)
    deadline = time.time() + timeout
    while time.time() < deadline:
        ids = store.trial_ids()
        if len(ids) >= n:
            return ids
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended early: {proc.stdout.read()}")  # type: ignore[union-attr]
        time.sleep(0.3)
    raise AssertionError(f"fewer than {n} rows after {timeout:g} s")


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill_session(proc.pid)
    return out


def assert_complete(uri: str) -> object:
    df = TrialStore(uri).dataframe()
    assert len(df) == NUM_SAMPLES, df[["trial_id", "status"]]
    assert df["trial_id"].is_unique
    bad = df[df["status"] != "ok"]
    assert bad.empty, bad[["trial_id", "status", "failures", "error"]].to_dict("records")
    return df


def test_driver_sigkill_then_resume_from_another_directory(
        tmp_path: Path, cluster: Cluster, s3_server: S3Server) -> None:
    # 40 epochs (~1.5 s a trial): at 4 a warm trial took 0.2 s, and the rest of the sweep could
    # end within one poll plus one batch of rows (0.5 s), leaving nothing to resume
    space, uri = space_file(tmp_path / "laptop", s3_server, "driverkill", epochs=40)
    # every checkpoint kept: with Ray's bound, a driver killed between Ray deleting an old
    # checkpoint and syncing its snapshot resumes a trial whose checkpoint is gone (docs/sweeps.md)
    space.write_text(space.read_text().replace("max_failures: 2}",
                                               "max_failures: 2, keep_checkpoints: null}"))
    proc = cli("sweep", str(space), "--address", cluster.address, cwd=space.parent,
               env_extra=client_env(cluster))
    try:
        wait_rows(uri, 2, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_session(proc.pid)
    before = TrialStore(uri).trial_ids()
    assert 2 <= len(before) < NUM_SAMPLES
    # another machine: a fresh directory with the space file only (no local state at all)
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    (fresh / "space.yaml").write_text(space.read_text())
    resumed = cli("sweep", "space.yaml", "--address", cluster.address, "--resume", cwd=fresh,
                  env_extra=client_env(cluster))
    out = finish(resumed)
    assert resumed.returncode == 0, out
    assert f"{NUM_SAMPLES}/{NUM_SAMPLES} recorded" in out
    assert sorted(p.name for p in fresh.iterdir()) == ["space.yaml"]  # nothing written locally
    df = assert_complete(uri)
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(uri)
    aside = {Path(i.path).stem for i in fs.get_file_info(
        pafs.FileSelector(f"{base}/trials_orphaned", allow_not_found=True))}
    assert before <= set(df["trial_id"]) | aside  # every row written before the kill is kept


def _sweep_through_outage(tmp_path: Path, cluster: Cluster, s3_server: S3Server, name: str,
                          outage: float) -> tuple[str, object, float, float]:
    """Run a sweep; once its first row is in S3, stop the S3 server for ``outage`` seconds
    (trials are running and checkpoint to S3 every epoch), then start it on the same port."""
    # 12 epochs (a trial of several seconds): the first row is seen up to a row batch (0.5 s)
    # after its trial ended, and the outage must still find trials running
    space, uri = space_file(tmp_path, s3_server, name, epochs=12)
    proc = cli("sweep", str(space), "--address", cluster.address, cwd=tmp_path,
               env_extra=client_env(cluster))
    try:
        wait_rows(uri, 1, proc)
        down = time.time()
        s3_server.stop()
        time.sleep(outage)
        s3_server.start()  # back on the same port, its data intact
        up = time.time()
        out = finish(proc)
    finally:
        if s3_server.server is None:
            s3_server.start()
        kill_session(proc.pid)
    assert proc.returncode == 0, out
    df = TrialStore(uri).dataframe()
    # nothing lost, nothing duplicated: one row per sample, whatever its status
    assert len(df) == NUM_SAMPLES and df["trial_id"].is_unique, df[["trial_id", "status"]]
    # the premise: trials were running (checkpointing to S3 each epoch) across the outage
    spans = [(r.start_time.timestamp(), r.end_time.timestamp()) for r in df.itertuples()]
    assert any(b < down and e > up for b, e in spans), (down, up, spans)
    print(f"{name}: outage {up - down:.1f} s; trial failures {int(df['failures'].sum())}; "
          f"a row write failed, then rewritten: {'could not write the results row' in out}")
    return uri, df, down, up


def test_s3_restart_mid_sweep_loses_nothing(tmp_path: Path, cluster: Cluster,
                                            s3_server: S3Server) -> None:
    """A restart of a few seconds: every trial ends ok (uploads retry, failed trials are
    retried from their last checkpoint, a missed row is written at the sweep's end)."""
    _, df, _, _ = _sweep_through_outage(tmp_path, cluster, s3_server, "s3restart", outage=3.0)
    assert set(df["status"]) == {"ok"}, df[["trial_id", "status", "failures", "error"]]


def test_s3_outage_longer_than_trial_retries(tmp_path: Path, cluster: Cluster,
                                             s3_server: S3Server) -> None:
    """20 s without S3, longer than Tune's immediate retries last (``max_failures``, no
    backoff; a restarted trial checks the storage first): every trial ends ok, since a refused
    report waits and retries inside the trial (``budget.storage_retry_s``). Before that, 2 of
    6 trials ended ``error`` here."""
    _, df, _, _ = _sweep_through_outage(tmp_path, cluster, s3_server, "s3outage", outage=20.0)
    assert set(df["status"]) == {"ok"}, df[["trial_id", "status", "failures", "error"]]


def mid_trial_node(uri: str, ids: dict[str, str], settle_s: float = 1.0) -> str:
    """A worker node that is training a trial now, not between two trials.

    Between two trials on a node, Ray Tune hands the finished trial's actor to the next trial
    (actor reuse) and resets it; a node killed inside that instant fails the reset, which Tune
    does not retry (``_process_trial_failure`` sees a PENDING trial): the next trial ends
    ``error`` whatever ``max_failures`` allows (seen twice in CI, "The actor ... is
    unavailable"; docs/sweeps.md, "A node lost mid-sweep"). This test is about a trial lost
    mid-training, so it waits until a node's last trial ended ``settle_s`` ago (the reset is
    done, its next trial is training; a trial here takes 3 s or more) and picks the one whose
    last trial ended earliest (or that has ended none), checked again ``settle_s`` later (a row
    is written up to a row batch, 0.5 s, after its trial ends: ``sweeps/tune/row_writer.py``)."""

    def last_ends() -> dict[str, object]:
        df = TrialStore(uri).dataframe()
        return {n: df.loc[df["node_id"] == ids[n], "end_time"].max()
                for n in ("worker1", "worker2")}

    deadline = time.time() + 120
    while time.time() < deadline:
        last = last_ends()
        now = pd.Timestamp.now(tz="UTC")
        quiet = {n: (now - t).total_seconds() if not pd.isna(t) else math.inf
                 for n, t in last.items()}
        victim = max(quiet, key=lambda n: quiet[n])
        if quiet[victim] >= settle_s:
            time.sleep(settle_s)
            again = last_ends()[victim]
            if (pd.isna(again) and pd.isna(last[victim])) or again == last[victim]:
                return victim
        time.sleep(0.2)
    raise AssertionError(f"no worker node was {settle_s:g} s into a trial within 120 s")


def test_worker_node_killed_mid_sweep_trials_retried_elsewhere(
        tmp_path: Path, cluster: Cluster, s3_server: S3Server) -> None:
    ids = cluster.node_ids()
    assert set(ids) == {"head", "worker1", "worker2"}, ids
    # room for retries (one is expected; Ray may start a retry before it marks the node dead)
    space, uri = space_file(tmp_path, s3_server, "nodekill", epochs=12, max_failures=5)
    proc = cli("sweep", str(space), "--address", cluster.address, cwd=tmp_path,
               env_extra=client_env(cluster))
    try:
        wait_rows(uri, 1, proc)
        victim = mid_trial_node(uri, ids)
        os.kill(cluster.raylet_pid(victim), signal.SIGKILL)
        out = finish(proc)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 0, out
    df = assert_complete(uri)
    survivor = ids["worker2" if victim == "worker1" else "worker1"]
    retried = df[df["failures"] > 0]
    assert len(retried) >= 1, df[["trial_id", "node_id", "failures"]]
    assert set(retried["node_id"]) == {survivor}  # the retry ran on the node still alive
    assert ids["head"] not in set(df["node_id"])  # the head (0 CPUs) runs no trial


def _listen_addresses(port: int) -> set[str]:
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(path).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            hexip, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                out.add(hexip)
    return out


def _other_ip() -> str | None:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return next((ip for ip in out if "." in ip and not ip.startswith("127.")), None)


def test_a_cluster_on_all_interfaces_requires_the_token(cluster: Cluster) -> None:
    # `ray start` binds its GCS on every interface (0.0.0.0 / ::), not only on 127.0.0.1
    assert _listen_addresses(cluster.port) & {"00000000", "0" * 32}, \
        _listen_addresses(cluster.port)
    ip = _other_ip() or "127.0.0.1"
    address = f"{ip}:{cluster.port}"

    def status(**env: str) -> subprocess.CompletedProcess[str]:
        e = {k: v for k, v in cluster.env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
        e["RAY_AUTH_TOKEN_PATH"] = "/nonexistent/auth_token"  # never ~/.ray/auth_token
        return subprocess.run([RAY, "status", f"--address={address}"], capture_output=True,
                              text=True, env={**e, **env}, timeout=120)

    ok = status(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster.env["RAY_AUTH_TOKEN"])
    assert ok.returncode == 0 and " node_" in ok.stdout, ok.stdout + ok.stderr
    wrong = status(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=new_token())
    assert wrong.returncode != 0 and " node_" not in wrong.stdout
    none = status(RAY_AUTH_MODE="disabled")
    assert none.returncode != 0 and " node_" not in none.stdout


def test_sweep_with_a_wrong_token_is_one_line_exit_2(tmp_path: Path, cluster: Cluster,
                                                     s3_server: S3Server) -> None:
    space, uri = space_file(tmp_path, s3_server, "wrongtoken")
    env = {**client_env(cluster), "RAY_AUTH_TOKEN": new_token()}
    proc = cli("sweep", str(space), "--address", cluster.address, cwd=tmp_path, env_extra=env)
    out = finish(proc, timeout=180)
    assert proc.returncode == 2, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and "token" in lines[0].lower(), out
    assert not TrialStore(uri).trial_ids()


def test_driver_of_another_ray_version_is_one_line_exit_2(tmp_path: Path, cluster: Cluster,
                                                         s3_server: S3Server) -> None:
    """Ray refuses a driver whose Ray (or Python) version differs from the cluster's with a
    multi-line RuntimeError; the CLI says both sides' versions in one line, exit 2. Fault
    added on purpose: the driver's ``ray.__version__`` is set to 2.0.0 before it connects."""
    import ray

    space, uri = space_file(tmp_path, s3_server, "oldray")
    code = ("import sys, ray; ray.__version__ = '2.0.0'; from sweeps.cli import main; "
            "sys.argv = ['prunetune', *sys.argv[1:]]; sys.exit(main())")
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_SILENT": "true", **client_env(cluster)}
    proc = subprocess.Popen([sys.executable, "-c", code, "sweep", str(space), "--address",
                             cluster.address], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out = finish(proc, timeout=180)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 2, out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    py = ".".join(map(str, sys.version_info[:3]))
    assert (f"the cluster runs Ray {ray.__version__} on Python {py}, this driver Ray 2.0.0 "
            f"on Python {py}") in lines[0], out
    assert not TrialStore(uri).trial_ids()


def test_gcs_port_is_reachable_off_loopback() -> None:
    """The premise of the token test: this machine has a non-loopback address to bind."""
    ip = _other_ip()
    assert ip is not None
    with socket.socket() as s:
        s.bind((ip, 0))
