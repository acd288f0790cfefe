"""The embedded Ray listens on loopback only (every port: GCS, raylet, workers, agents)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import json, socket, struct

    def listening():
        out = set()
        for path, fam in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
            try:
                lines = open(path).read().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                parts = line.split()
                if parts[3] != "0A":  # LISTEN
                    continue
                hexip, hexport = parts[1].split(":")
                raw = bytes.fromhex(hexip)
                if fam == 4:
                    ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
                else:
                    words = struct.unpack("<4I", raw)
                    ip = socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))
                out.add((ip, int(hexport, 16)))
        return out

    before = listening()
    import ray
    from sweeps.tune.launch import init_ray

    init_ray(None, num_cpus=1)

    @ray.remote
    def f():
        return 1

    assert ray.get(f.remote()) == 1
    new = sorted(listening() - before)
    node = ray.nodes()[0]["NodeManagerAddress"]
    ray.shutdown()
    print(json.dumps({"new": new, "node": node}))
""")


def _loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip in ("::1", "::ffff:127.0.0.1")


@pytest.mark.slow
def test_embedded_ray_binds_only_loopback() -> None:
    p = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env={"PATH": "/usr/bin:/bin", "RAY_USAGE_STATS_ENABLED": "0",
                                         "PYTHONPATH": str(REPO), "HOME": str(Path.home())})
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["node"] == "127.0.0.1"
    assert len(out["new"]) >= 3  # GCS, raylet, a worker at least
    exposed = [(ip, port) for ip, port in out["new"] if not _loopback(ip)]
    assert exposed == [], f"Ray ports reachable beyond loopback: {exposed}"
