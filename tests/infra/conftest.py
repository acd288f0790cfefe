"""Shared pieces of the infra tests: real ``ray start`` processes, a real moto S3 server on
127.0.0.1 that can be restarted on the same port, and process bookkeeping by environment mark
(every process a test starts inherits ``PRUNETUNE_TEST_MARK``; none may outlive the test)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sweeps.conftest import REPO, kill_session

PY = sys.executable
RAY = str(Path(PY).with_name("ray"))
MARK = "PRUNETUNE_TEST_MARK"
CREDS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
         "AWS_DEFAULT_REGION": "us-east-1"}

__all__ = ["CREDS", "MARK", "PY", "RAY", "REPO", "Cluster", "S3Server", "cluster_env",
           "free_port", "kill_marked", "marked", "new_token", "wait_gone"]


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_token() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex


def marked(mark: str) -> list[tuple[int, str]]:
    """Live (non-zombie) processes whose environment carries ``MARK=mark``, with their
    command lines."""
    needle = f"{MARK}={mark}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if needle not in (d / "environ").read_bytes():
                continue
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out.append((int(d.name), cmd))
    return out


def kill_marked(mark: str) -> None:
    for pid, _ in marked(mark):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_gone(mark: str, limit: float = 30.0) -> list[tuple[int, str]]:
    """Processes still carrying ``mark`` after up to ``limit`` seconds (empty: all gone)."""
    deadline = time.time() + limit
    left = marked(mark)
    while left and time.time() < deadline:
        time.sleep(0.5)
        left = marked(mark)
    return [(pid, cmd[:120]) for pid, cmd in left]


# ----------------------------------------------------------------------------- S3 (moto)
class S3Server:
    """moto's S3 server in this process, on a fixed 127.0.0.1 port. Its buckets live in moto's
    module state, so ``stop()`` + ``start()`` is a restart that keeps the data, as a real
    object store's restart would."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: object | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()  # type: ignore[attr-defined]
            self.server = None

    def reset(self, bucket: str = "sweeps") -> None:
        """Empty moto's state (it is per process) and create ``bucket``."""
        import boto3

        urllib.request.urlopen(urllib.request.Request(
            f"http://{self.endpoint}/moto-api/reset", method="POST")).read()
        boto3.client("s3", endpoint_url=f"http://{self.endpoint}", region_name="us-east-1",
                     aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"],
                     ).create_bucket(Bucket=bucket)

    def uri(self, prefix: str, bucket: str = "sweeps") -> str:
        return (f"s3://{bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http"
                "&region=us-east-1")


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    for k, v in CREDS.items():
        os.environ.setdefault(k, v)
    server = S3Server()
    server.start()
    server.reset()
    try:
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------------------- Ray cluster
class Cluster:
    """A head and worker nodes, each a separate ``ray start --block`` process (own session)."""

    def __init__(self, env: dict[str, str], head_cpus: int, worker_cpus: int) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = env
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = Path(env["PRUNETUNE_INFRA_LOGS"])

    def _start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        # several nodes on one machine: each agent on its own port (the default 52365 is shared)
        ports = [f"--dashboard-agent-listen-port={free_port()}",
                 f"--metrics-export-port={free_port()}"]
        self.procs[name] = subprocess.Popen(
            [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1",
             f"--node-name={name}", *ports, *args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env)

    def start(self, workers: int) -> None:
        self._start("head", "--head", "--include-dashboard=false", f"--port={self.port}",
                    f"--num-cpus={self.head_cpus}")
        self.wait_nodes(1)
        for i in range(1, workers + 1):  # one at a time: 2 busy cores
            self._start(f"worker{i}", f"--address={self.address}",
                        f"--num-cpus={self.worker_cpus}")
            self.wait_nodes(1 + i)

    def status(self) -> str:
        return subprocess.run([RAY, "status", f"--address={self.address}"], capture_output=True,
                              text=True, env=self.env, timeout=60).stdout

    def wait_nodes(self, n: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.status().count(" node_") >= n:
                return
            for name, p in self.procs.items():
                log = (self.logs / f"{name}.log").read_text()
                assert p.poll() is None, f"{name} exited: {log}"
            time.sleep(1)
        raise AssertionError(f"{n} nodes never came up:\n{self.status()}")

    def node_ids(self) -> dict[str, str]:
        """Node name -> Ray node id, asked of the GCS by a short-lived driver."""
        code = (f"import json, ray; ray.init(address='{self.address}', logging_level='ERROR')\n"
                "print(json.dumps({n['NodeName']: n['NodeID'] for n in ray.nodes() "
                "if n['Alive']}))")
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=self.env,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    def raylet_pid(self, name: str) -> int:
        """The raylet of node ``name`` (Ray passes it ``--node-name``; ours carry the mark)."""
        for pid, cmd in marked(self.env[MARK]):
            argv = cmd.split()
            if argv and argv[0].endswith("/raylet") and f"--node-name={name}" in argv:
                return pid
        raise AssertionError(f"no raylet of node {name}")

    def stop(self) -> None:
        for p in self.procs.values():  # `ray start --block` stops its node on SIGTERM
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
            kill_session(p.pid)


def cluster_env(tmp: Path, mark: str, token: str) -> dict[str, str]:
    """Environment of every node and client: token auth with the test's own token (never
    ~/.ray/auth_token), S3 credentials, the repo importable. (Ray's health-check defaults are
    kept: shorter ones made nodes time out while joining on 2 busy cores.)"""
    logs = tmp / "ray-logs"
    logs.mkdir(parents=True, exist_ok=True)
    return {**os.environ, **CREDS, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
            MARK: mark, "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0",
            "WANDB_MODE": "disabled", "WANDB_SILENT": "true", "PRUNETUNE_INFRA_LOGS": str(logs)}
