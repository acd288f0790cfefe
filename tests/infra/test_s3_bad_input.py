"""Issue 13, bad input: an S3 URI without credentials, or naming a bucket that does not exist,
fails before any trial starts (moto S3 on 127.0.0.1; the embedded Ray)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.sweeps.conftest import write_space

from .conftest import CREDS, PY, REPO, S3Server

pytestmark = pytest.mark.slow

SPACE = """\
name: bad
objectives: [{{metric: test_accuracy, mode: max}}]
sampler: {{name: random, seed: 0}}
budget: {{num_samples: 2, max_concurrent: 1}}
fixed:
  model: {{name: mlp, options: {{hidden: [16]}}}}
  data: {{name: digits, train_limit: 200}}
  train: {{epochs: 1}}
params:
  prune.sparsity: {{type: float, low: 0.3, high: 0.9}}
storage: "{uri}"
wandb: {{mode: disabled}}
"""


@pytest.mark.parametrize("case", ["no-bucket", "no-credentials"])
def test_bad_s3_storage_fails_before_any_trial(case: str, tmp_path: Path,
                                               s3_server: S3Server) -> None:
    import boto3

    uri = s3_server.uri(f"runs/{case}", bucket="nope" if case == "no-bucket" else "sweeps")
    write_space(tmp_path / "space.yaml", SPACE.format(uri=uri))
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled",
           "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    if case == "no-credentials":
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(k, None)
    out = subprocess.run([str(Path(PY).with_name("prunetune")), "sweep", "space.yaml",
                          "--num-cpus", "1"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode != 0
    assert "recorded" not in out.stdout  # no trial table: nothing ran
    s3 = boto3.client("s3", endpoint_url=f"http://{s3_server.endpoint}", region_name="us-east-1",
                      aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    if case == "no-bucket":
        assert "nope" not in buckets
    else:  # moto does not enforce credentials as AWS does: it took anonymous PUTs of Ray's
        # storage marker; what matters is that no trial ran, so no row exists
        listed = s3.list_objects_v2(Bucket="sweeps", Prefix=f"runs/{case}/trials/")
        assert not listed.get("Contents"), listed.get("Contents")
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert out.returncode == 2 and len(lines) == 1, out.stdout + out.stderr
    assert lines[0].startswith("error: storage: cannot write to s3://"), lines[0]
