"""infra/k8s/: every pod template validated by ``kubernetes-validate`` (Kubernetes' own OpenAPI
schemas, strict: unknown fields fail), plus the KubeRay invariants no schema package covers (no
KubeRay CRD schema is published on PyPI): secrets by reference only, GPU workers, a dashboard
on a ClusterIP service, ``prunetune sweep`` as the RayJob's entrypoint, and the two manifests'
pod templates kept equal."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
K8S_VERSION = "1.37.0"  # the newest schema kubernetes-validate ships
#: the Secret keys the pods read (created with `kubectl create secret`, see infra/README.md)
SECRETS = {"RAY_AUTH_TOKEN": "prunetune-ray-token", "AWS_ACCESS_KEY_ID": "prunetune-s3",
           "AWS_SECRET_ACCESS_KEY": "prunetune-s3", "WANDB_API_KEY": "prunetune-wandb"}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / name).read_text())


def cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def pod_templates(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = cluster_spec(doc)
    out = {"head": spec["headGroupSpec"]["template"]}
    out |= {f"worker/{g['groupName']}": g["template"] for g in spec["workerGroupSpecs"]}
    if doc["kind"] == "RayJob":
        out["submitter"] = doc["spec"]["submitterPodTemplate"]
    return out


def validate_pod_template(template: dict[str, Any]) -> None:
    """Kubernetes' schema of a PodTemplate (strict) around a KubeRay group's ``template``."""
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate",
                                  "metadata": {"name": "t"}, "template": template},
                                 K8S_VERSION, strict=True)


MANIFESTS = ["raycluster.yaml", "rayjob.yaml"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_pod_templates_match_kubernetes_schema(name: str) -> None:
    for group, template in pod_templates(load(name)).items():
        try:
            validate_pod_template(template)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} {group}: {exc.message} at {list(exc.path)}")


def test_schema_check_is_not_a_no_op() -> None:
    template = pod_templates(load("raycluster.yaml"))["head"]
    template["spec"]["containers"][0]["resource"] = {}  # a typo of `resources`
    with pytest.raises(kubernetes_validate.ValidationError, match="resource"):
        validate_pod_template(template)


@pytest.mark.parametrize("name", MANIFESTS)
def test_secrets_are_referenced_never_inline(name: str) -> None:
    text = (K8S / name).read_text()
    assert "kind: Secret" not in text and "stringData" not in text
    for group, template in pod_templates(load(name)).items():
        for c in template["spec"]["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            assert env["RAY_AUTH_MODE"]["value"] == "token", group
            if group != "submitter":  # workers scale from 0: the GPU preflight must wait
                assert env["PRUNETUNE_AUTOSCALING"]["value"] == "1", group
            for var, secret in SECRETS.items():
                if var not in env:
                    assert group == "submitter" and var != "RAY_AUTH_TOKEN", (group, var)
                    continue
                assert "value" not in env[var], f"{group}: {var} written inline"
                assert env[var]["valueFrom"]["secretKeyRef"]["name"] == secret, (group, var)


@pytest.mark.parametrize("name", MANIFESTS)
def test_gpu_workers_and_an_internal_dashboard(name: str) -> None:
    doc = load(name)
    spec = cluster_spec(doc)
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"ray[tune]=={spec['rayVersion']}" in pins  # KubeRay's rayVersion = our pin
    head = spec["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"
    assert head["rayStartParams"]["num-cpus"] == "0"
    text = (K8S / name).read_text()
    assert not re.search(r"NodePort|LoadBalancer|enableIngress:\s*true|kind:\s*Ingress", text)
    assert spec["enableInTreeAutoscaling"] is True
    for group in spec["workerGroupSpecs"]:
        (c,) = group["template"]["spec"]["containers"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"][
            "nvidia.com/gpu"] == "1"
        assert c["image"].endswith(":gpu")
        assert group["minReplicas"] == 0 and group["maxReplicas"] >= 100
    assert head["template"]["spec"]["containers"][0]["image"].endswith(":cpu")


def test_rayjob_runs_prunetune_sweep() -> None:
    doc = load("rayjob.yaml")
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:2] == ["prunetune", "sweep"]
    assert argv[argv.index("--address") + 1] == "auto"
    space = Path(argv[2])
    mounts = {m["mountPath"]: m["name"] for m in
              doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0][
                  "volumeMounts"]}
    assert str(space.parent) in mounts  # the space is mounted on the head, where the driver runs
    assert doc["spec"]["shutdownAfterJobFinishes"] is True


def test_raycluster_and_rayjob_pods_do_not_drift() -> None:
    cluster, job = load("raycluster.yaml"), load("rayjob.yaml")
    assert cluster_spec(cluster) == cluster_spec(job)
