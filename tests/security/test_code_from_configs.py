"""A received config, space or schedule never makes prunetune run code outside the user's own
(issue 16): installed libraries are gadget stores (``click:edit`` runs an editor command,
``joblib:load`` unpickles, ``_pytest.config:main`` starts a session), and a module's import-time
code runs before any check made after importing it. ``pruning_core.base.code_trust`` decides before
anything is imported; these tests plant a marker command in each gadget and assert it never
ran."""

from __future__ import annotations

import importlib.metadata
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pruning_core.base.code_trust import ALLOW_ENV, allow_import, check_import, is_own_code
from pruning_core.base.errors import ConfigError
from pruning_core.workloads.factories import resolve
from sweeps.tune.code_env import trust_env
from tests.conftest import user_code_dir
from tests.security.conftest import BASE_CONFIG, REPO, assert_refused, prunetune


class _Touch:
    """Unpickles as ``os.system('touch MARKER')``: what a poisoned joblib file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _gadgets(tmp: Path, marker: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (data.name, data.options), each of which writes ``marker`` if it ever runs."""
    (tmp / "evil.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    side = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    # a module of the working directory whose import has a side effect and that names a
    # re-exported library callable; and a package (dir) that re-exports os.system
    (tmp / "evilreexp.py").write_text(side + "from os import system\n")
    (tmp / "reexp_pkg").mkdir()
    (tmp / "reexp_pkg" / "__init__.py").write_text(side + "from os import system as run\n")
    (tmp / "alias_mod.py").write_text(side + "import os\nsystem = os.system\n")
    return {
        "click-edit": ("click:edit", {"editor": f"touch {marker}; true",
                                      "filename": str(tmp / "f.txt")}),
        "joblib-load": ("joblib:load", {"filename": str(tmp / "evil.pkl")}),
        "pytest-main": ("_pytest.config:main", {"args": ["--co", "-p", "no:cacheprovider",
                                                         f"--junitxml={marker}"]}),
        "cwd-reexport": ("evilreexp:system", {"command": f"touch {marker}"}),
        "cwd-package-reexport": ("reexp_pkg:run", {"command": f"touch {marker}"}),
        "cwd-alias": ("alias_mod:system", {"command": f"touch {marker}"}),
    }


GADGETS = ["click-edit", "joblib-load", "pytest-main", "cwd-reexport", "cwd-package-reexport",
           "cwd-alias"]


def _config(name: str, options: dict[str, Any]) -> dict[str, Any]:
    return {**BASE_CONFIG, "data": {"name": name, "options": options}}


@pytest.mark.parametrize("gadget", GADGETS)
def test_a_received_config_runs_no_gadget(tmp_path: Path, gadget: str) -> None:
    marker = tmp_path / "MARKER"
    name, options = _gadgets(tmp_path, marker)[gadget]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_config(name, options)))
    p = prunetune("run", "c.yaml", cwd=tmp_path)
    assert_refused(p, "data.name:", name, stdout_empty=False)
    assert not marker.exists(), f"{gadget} ran code"


@pytest.mark.parametrize("gadget", GADGETS)
def test_a_received_space_runs_no_gadget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         gadget: str) -> None:
    from sweeps.tune.space import parse_space, validate_space

    marker = tmp_path / "MARKER"
    name, options = _gadgets(tmp_path, marker)[gadget]
    user_code_dir(monkeypatch, tmp_path, "evilreexp", "reexp_pkg", "alias_mod")
    space = parse_space({
        "name": "s", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "fixed": {**BASE_CONFIG, "data": {"name": name, "options": options}},
        "params": {"train.momentum": {"type": "float", "low": 0.5, "high": 0.9}},
        "storage": str(tmp_path / "res")})
    with pytest.raises(ConfigError, match=r"^fixed: data\.name: "):
        validate_space(space, n=2)
    assert not marker.exists(), f"{gadget} ran code"
    assert not any(m.split(".")[0] in ("evilreexp", "reexp_pkg", "alias_mod")
                   for m in sys.modules), "a refused module was imported"


def _schedule_for(tmp: Path, name: str, options: dict[str, Any]) -> Path:
    from tests.security.conftest import write_exportable_results

    write_exportable_results(tmp / "res", [0.5])
    p = prunetune("schedule", "export", "res", "--best", "test_accuracy", "--out", "s.yaml",
                  cwd=tmp)
    assert p.returncode == 0, p.stderr
    doc = yaml.safe_load((tmp / "s.yaml").read_text())
    doc["trial"]["data"] = {"name": name, "options": options}
    (tmp / "s.yaml").write_text(yaml.safe_dump(doc))
    return tmp / "s.yaml"


@pytest.mark.parametrize("gadget", ["click-edit", "joblib-load"])
def test_a_trusted_schedule_still_runs_no_gadget(tmp_path: Path, gadget: str) -> None:
    """Even ``--trust-schedule`` lets a schedule name only the user's own code."""
    marker = tmp_path / "MARKER"
    name, options = _gadgets(tmp_path, marker)[gadget]
    schedule = _schedule_for(tmp_path, name, options)
    refused = prunetune("apply", schedule, cwd=tmp_path)  # untrusted: the import is refused
    assert_refused(refused, "trial.data.name names code to import", stdout_empty=False)
    trusted = prunetune("apply", schedule, "--trust-schedule", cwd=tmp_path)
    lines = trusted.stderr.strip().splitlines()
    assert trusted.returncode == 2 and "Traceback" not in trusted.stderr, trusted.stderr
    assert lines[0].startswith("warning: --trust-schedule:") and f"data.name={name}" in lines[0]
    assert lines[-1].startswith("error: data.name:") and "is not your code" in lines[-1]
    assert not marker.exists()


def test_an_installed_package_inside_the_working_directory_is_not_own_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project's own ``.venv`` lies inside the working directory: its site-packages are
    installed libraries all the same."""
    site = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages"
    (site / "inst_gadget").mkdir(parents=True)
    marker = tmp_path / "MARKER"
    (site / "inst_gadget" / "__init__.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\ndef build(*a):\n    pass\n")
    user_code_dir(monkeypatch, tmp_path, "inst_gadget")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(ConfigError, match=r"'inst_gadget:build' is not your code .*"
                                          r"--allow-import inst_gadget"):
        resolve("inst_gadget:build", "model.name")
    assert not marker.exists() and "inst_gadget" not in sys.modules
    assert not is_own_code(site / "inst_gadget") and is_own_code(tmp_path / "nets.py")


def _top_level_modules() -> list[str]:
    """Every importable top-level name that the venv's installed distributions provide."""
    names = set()
    for top, dists in importlib.metadata.packages_distributions().items():
        if top.isidentifier() and not top.startswith("__") and dists != ["prunetune"]:
            names.add(top)
    return sorted(names)


def test_no_installed_distribution_can_be_named_by_a_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Property over the whole venv: ``pkg:anything`` is refused for every installed top-level
    package unless the user allows it, and refusing imports nothing."""
    monkeypatch.chdir(tmp_path)
    tops = _top_level_modules()
    assert {"click", "joblib", "_pytest", "torch", "ray", "optuna"} <= set(tops), tops
    before = set(sys.modules)
    for top in tops:
        with pytest.raises(ConfigError, match=r"^model\.name: "):
            check_import(top, "any_callable", "model.name")
    newly = {m.split(".")[0] for m in set(sys.modules) - before}
    assert not newly & set(tops), f"refusing imported {sorted(newly & set(tops))}"
    # the user's word (never the file's) lets one installed package through
    monkeypatch.setenv(ALLOW_ENV, "click")
    check_import("click", "edit", "model.name")
    with pytest.raises(ConfigError, match="is not your code"):
        check_import("joblib", "load", "model.name")
    with pytest.raises(ConfigError, match="names the 'os' library"):  # stdlib: never
        allow_import("os")
        check_import("os", "system", "model.name")


def test_own_code_in_the_working_directory_and_allowances_travel_to_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ownpkg").mkdir()
    (tmp_path / "ownpkg" / "__init__.py").write_text("from .nets import build\n")
    (tmp_path / "ownpkg" / "nets.py").write_text(
        "from torch import nn\n"
        "def build(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(4, num_classes))\n")
    user_code_dir(monkeypatch, tmp_path, "ownpkg")
    # a re-export inside the user's own package is followed to its def
    assert resolve("ownpkg:build", "model.name") is resolve("ownpkg.nets:build", "model.name")
    allow_import("mylib", "other_lib")
    env = trust_env()
    assert env[ALLOW_ENV] == "mylib,other_lib"
    with pytest.raises(ConfigError, match="--allow-import: 'a.b' is not a top-level package"):
        allow_import("a.b")


def test_cli_allow_import_lets_an_installed_package_of_yours_through(tmp_path: Path) -> None:
    """An installed package (here: on PYTHONPATH outside the working directory) is refused
    until ``--allow-import`` names it, then its factory trains."""
    lib = tmp_path / "lib"
    (lib / "instnets").mkdir(parents=True)
    (lib / "instnets" / "__init__.py").write_text(
        "from torch import nn\n"
        "def build(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))\n")
    work = tmp_path / "work"
    work.mkdir()
    cfg = {**BASE_CONFIG, "model": {"name": "instnets:build"}}
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{lib}", "WANDB_MODE": "offline"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sweeps.cli", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)

    refused = cli("run", "c.yaml")
    ok = cli("run", "c.yaml", "--allow-import", "instnets", "--json", "r.json")
    assert_refused(refused, "'instnets:build' is not your code", "--allow-import instnets",
                   stdout_empty=False)
    assert ok.returncode == 0, ok.stderr
    assert yaml.safe_load((work / "r.json").read_text())["params"] == 64 * 10 + 10
