"""infra/ray/*.yaml against Ray's own cluster-launcher schema (``ray/autoscaler/ray-schema.json``,
shipped in the ``ray`` package) and the checks ``ray up`` runs before it touches a cloud."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"aws": REPO / "infra/ray/cluster.yaml", "local": REPO / "infra/ray/cluster-local.yaml"}
#: GPUs per instance of the AWS worker types we use
GPUS = {"g5.2xlarge": 1, "g5.12xlarge": 4, "p4d.24xlarge": 8}


def ray_schema() -> dict[str, Any]:
    """The JSON schema the cluster launcher validates against (package data of ``ray``)."""
    return json.loads((importlib.resources.files("ray.autoscaler") / "ray-schema.json")
                      .read_text())


def ray_up_checks(config: dict[str, Any]) -> dict[str, Any]:
    """What ``ray up`` does to a config before any cloud call: merge the provider's defaults,
    then validate (schema + head type + worker limits + docker). Returns the prepared config.

    Ray has no public API for this (``ray.autoscaler.sdk.bootstrap_config`` goes on to call the
    cloud); the one private import is isolated here and ``test_ray_up_checks_are_importable``
    fails by name if Ray moves it.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load(CONFIGS[name].read_text())


def ray_pin() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==")[1] for d in deps if d.startswith("ray["))


def test_ray_up_checks_are_importable() -> None:
    from ray.autoscaler._private import util

    assert callable(util.prepare_config) and callable(util.validate_config)
    assert "ray-schema.json" in {p.name for p in importlib.resources.files(
        "ray.autoscaler").iterdir()}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_matches_rays_schema(name: str) -> None:
    from ray.autoscaler.sdk import fillout_defaults

    config = load(name)
    try:
        jsonschema.validate(config, ray_schema())
        jsonschema.validate(fillout_defaults(copy.deepcopy(config)), ray_schema())
    except jsonschema.ValidationError as exc:  # the full error repeats the whole schema
        pytest.fail(f"{CONFIGS[name].name}: {exc.message} at {list(exc.absolute_path)}")
    ray_up_checks(config)


def test_schema_check_is_not_a_no_op() -> None:
    """A typo'd key and a head type that does not exist are both refused."""
    typo = load("aws")
    typo["max_worker"] = typo.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        jsonschema.validate(typo, ray_schema())
    bad_head = load("aws")
    bad_head["head_node_type"] = "nope"
    with pytest.raises(ValueError, match="head_node_type"):
        ray_up_checks(bad_head)


def test_aws_gpu_workers_autoscale_to_100_gpus() -> None:
    prepared = ray_up_checks(load("aws"))
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # the driver's node runs no trial
    gpu_types = {k: v for k, v in types.items() if k != prepared["head_node_type"]}
    assert gpu_types and all(v["node_config"]["InstanceType"] in GPUS for v in gpu_types.values())
    assert all(v["min_workers"] == 0 for v in gpu_types.values())  # scale to zero when idle
    per_type = {k: GPUS[v["node_config"]["InstanceType"]] * v["max_workers"]
                for k, v in gpu_types.items()}
    assert max(per_type.values()) >= 100, per_type
    assert prepared["max_workers"] <= sum(v["max_workers"] for v in gpu_types.values())
    # workers write Tune's checkpoints to S3 themselves: they need an instance profile
    assert all("IamInstanceProfile" in v["node_config"] for v in gpu_types.values())
    assert "--gpus all" in prepared["docker"]["worker_run_options"]
    # GPU nodes join after the sweep starts: prunetune's resource preflight must wait for them
    assert "-e PRUNETUNE_AUTOSCALING=1" in prepared["docker"]["run_options"]


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_nodes_run_the_pinned_image_with_token_auth(name: str) -> None:
    config = load(name)
    images = [config["docker"]["image"], config["docker"].get("head_image", "")]
    assert all(re.search(r"/prunetune:(gpu|cpu)$", i) for i in images if i), images
    assert any(f"ray.__version__ == '{ray_pin()}'" in c for c in config["setup_commands"])
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert "-e RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    # the token reaches every node as a file, never inline in the config
    assert list(config["file_mounts"].values()) == ["~/.ray/auth_token"]
    assert "RAY_AUTH_TOKEN=" not in CONFIGS[name].read_text()
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head  # dashboard reachable via `ray dashboard` only


def test_local_provider_lists_the_machines() -> None:
    prepared = ray_up_checks(load("local"))
    provider = prepared["provider"]
    assert provider["type"] == "local" and provider["head_ip"]
    assert len(provider["worker_ips"]) == prepared["max_workers"]
    assert "--env-file /etc/prunetune/s3.env" in prepared["docker"]["run_options"]
