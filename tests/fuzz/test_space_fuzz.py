"""``prunetune validate`` and ``prunetune sweep``: mutations of the spaces in
``search_spaces/``, in-process.

Every input goes through **both** commands: ``validate`` and ``sweep`` share one pre-launch
validation, so they must agree. A refused input ends ``sweep`` fast, before W&B writers or Ray
start (the ``no_launch`` fixture turns their start into ``Launched``, so no real sweep ever
runs here); an accepted input is one ``validate`` prints ``ok: ...`` for and ``sweep`` carries
to the launch.

Rules: a wrong kind of value at every schema field of the demo space, misspelt keys, every
text rule on both spaces, truncation at every 41st byte, bad paths, bad ``sweep`` options.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Launched, Outcome, check_accepted, check_refused, guarded, invoke
from .mutate import KINDS_FOR, SPACES, TEXT_RULES, WRONG, Key, dump, key_id, set_path, truncations

DEMO = yaml.safe_load((SPACES[0].parent / "demo_mnist1d.yaml").read_text())
#: seconds a refused ``sweep`` may take (pre-launch validation only: no Ray, no trial)
FAST_S = 5.0

KEYS: dict[Key, str] = {
    "name": "name", "objectives": "section", "objectives.0.metric": "name",
    "objectives.0.mode": "name", "sampler.name": "name", "sampler.seed": "int",
    "sampler.options": "section", "budget.num_samples": "int", "budget.max_concurrent": "int",
    "budget.max_failures": "int", "budget.time_budget_s": "float", "resources.cpu": "float",
    "resources.gpu": "float", "scheduler": "section", "scheduler.metric": "name",
    "scheduler.grace_period": "int", "scheduler.reduction_factor": "int",
    "fixed": "section", "fixed.seed": "int", "fixed.train.epochs": "int",
    "fixed.model.name": "name", "params": "section",
    ("params", "prune.sparsity", "low"): "float", ("params", "prune.sparsity", "high"): "float",
    ("params", "prune.steps", "low"): "int", ("params", "prune.criterion", "values"): "list",
    ("params", "prune.criterion", "type"): "name", ("params", "prune.steps", "when"): "section",
    ("params", "prune.criterion_options.temperature", "log"): "flag",
    "storage": "name", "wandb.mode": "name", "wandb": "section",
}

#: (key, kind) whose value is valid: the reason
ACCEPTED: dict[tuple[str, str], str] = {
    ("name", "long"): "storage: names the results directory here; the name is a label",
    ("sampler.seed", "null"): "no seed: a random one",
    ("budget.num_samples", "huge"): "how many trials is the user's call (time_budget_s and "
                                    "Ctrl-C end a sweep; --resume finishes it)",
    ("budget.max_concurrent", "null"): "null = as many as resources allow",
    ("budget.max_concurrent", "huge"): "a cap above the trial count is no cap",
    ("budget.max_failures", "huge"): "a cap above the trial count is no cap",
    ("budget.time_budget_s", "null"): "null = no time limit",
    ("budget.time_budget_s", "huge"): "a very long time limit",
    ("resources.cpu", "huge"): "checked against the cluster once Ray is up (check_cluster: "
                               "the cluster's CPUs are not known before)",
    ("resources.gpu", "huge"): "checked against the cluster once Ray is up (check_cluster)",
    ("scheduler", "null"): "no scheduler (every trial runs to its end)",
    ("scheduler.metric", "null"): "the demo's scheduler is name: dominated, which reads the "
                                  "objectives and takes no metric",
    ("scheduler.reduction_factor", "huge"): "ASHA with one rung: legal",
    ("storage", "null"): "null = results/<name>",
}

def _cases() -> list[Any]:
    cases = []
    for key, kind in KEYS.items():
        kid = key_id(key)
        for k in KINDS_FOR[kind]:
            if (kid, k) == ("fixed.train.epochs", "huge"):
                continue  # never in-process: test_sweep_unbounded_epochs
            cases.append(pytest.param(key, WRONG[k], ACCEPTED.get((kid, k)), id=f"{kid}={k}"))
    for key in ("nam", "objective", "sampler.sed", "budget.num_sample", "resources.gpus",
                "scheduler.grace", "fixed.prune.sparsty", ("params", "prune.sparsity", "lo"),
                "wandb.projet"):
        cases.append(pytest.param(key, 1, None, id=f"unknown:{key_id(key)}"))
    return cases


def both(space: Path, *sweep_args: str) -> tuple[Outcome, Outcome]:
    """``validate SPACE`` then ``sweep SPACE ARGS`` (stopped at the launch)."""
    return invoke("validate", space, timeout=10), invoke("sweep", space, *sweep_args, timeout=8)


def check_agree(v: Outcome, s: Outcome, valid: str | None, *needles: str) -> None:
    """Both refuse (sweep fast, before launch) or both accept (sweep reaches the launch)."""
    if valid is None:
        check_refused(v, *needles)
        check_refused(s, *needles)
        assert s.seconds < FAST_S, f"refused sweep took {s.seconds:.1f} s:\n{s}"
    else:
        check_accepted(v, "sampled configurations are valid")
        assert isinstance(s.exception, Launched), f"sweep did not reach the launch:\n{s}"
        assert s.stdout == "" and s.stderr == "", str(s)


@pytest.mark.usefixtures("no_launch")
@pytest.mark.parametrize(("key", "value", "valid"), _cases())
def test_space_structured(tmp_path: Path, key: Key, value: Any, valid: str | None) -> None:
    space = tmp_path / "s.yaml"
    space.write_bytes(dump(set_path(DEMO, key, value)))
    check_agree(*both(space), valid)


@pytest.mark.slow
def test_sweep_unbounded_epochs(tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    space.write_bytes(dump(set_path(DEMO, "fixed.train.epochs", WRONG["huge"])))
    check_refused(invoke("validate", space, timeout=10), "epochs")
    check_refused(guarded("sweep", space), "epochs")


def _space_text(name: str) -> bytes:
    return dump(yaml.safe_load((SPACES[0].parent / name).read_text()))


TEXT_CASES = [pytest.param(p.name, rule, id=f"{p.stem}:{rule.name}")
              for p in SPACES[:1] for rule in TEXT_RULES]


@pytest.mark.usefixtures("no_launch")
@pytest.mark.parametrize(("name", "rule"), TEXT_CASES)
def test_space_text(tmp_path: Path, name: str, rule: Any) -> None:
    space = tmp_path / "s.yaml"
    space.write_bytes(rule.apply(_space_text(name)))
    check_agree(*both(space), rule.valid)


#: (demo_mnist1d@410 drops fixed.train: grace_period 15 is past the 10-epoch default plan,
#: which validate and sweep both refuse)
TRUNC_CASES = [pytest.param(p.name, k, id=f"{p.stem}@{k}")
               for p in SPACES for k, _ in truncations(_space_text(p.name), 67)]


@pytest.mark.usefixtures("no_launch")
@pytest.mark.parametrize(("name", "offset"), TRUNC_CASES)
def test_space_truncated(tmp_path: Path, name: str, offset: int) -> None:
    """Refused by both, or (cut at a line end) a shorter space both accept."""
    space = tmp_path / "s.yaml"
    space.write_bytes(_space_text(name)[:offset])
    v, s = both(space)
    check_agree(v, s, "a prefix that is itself a valid space" if v.code == 0 else None)


def _fifo(tmp: Path) -> Path:
    import os

    p = tmp / "fifo.yaml"
    os.mkfifo(p)
    return p


@pytest.mark.usefixtures("no_launch")
@pytest.mark.parametrize(("make", "needle"), [
    pytest.param(lambda t: t / "missing.yaml", "no such file", id="missing"),
    pytest.param(lambda t: t, "is a directory", id="directory"),
    pytest.param(lambda t: Path("/dev/null"), "not a regular file", id="char-device"),
    pytest.param(_fifo, "not a regular file", id="fifo"),
    pytest.param(lambda t: Path("/proc/self/status"), "status", id="proc-file"),
])
def test_space_path(tmp_path: Path, make: Any, needle: str) -> None:
    check_agree(*both(make(tmp_path)), None, needle)


SWEEP_OPTIONS: list[Any] = [
    pytest.param(["--num-samples", "0"], None, id="num-samples-0"),
    pytest.param(["--num-samples", "-3"], None, id="num-samples-neg"),
    pytest.param(["--num-samples", "abc"], None, id="num-samples-str"),
    pytest.param(["--num-samples", "99999999999999999999999"], "like budget.num_samples: the "
                 "user's call", id="num-samples-huge"),
    pytest.param(["--num-cpus", "0"], None, id="num-cpus-0"),
    pytest.param(["--num-cpus", "-1"], None, id="num-cpus-neg"),
    pytest.param(["--name", ""], "an empty --name is no override (the space's name is used)",
                 id="name-empty"),
    pytest.param(["--name", "../escape"], None, id="name-dotdot"),
    pytest.param(["--name", "a/b"], None, id="name-slash"),
    pytest.param(["--name", "x" * 300], None, id="name-long"),
    pytest.param(["--address", "banana"], None, id="address-no-port"),
    pytest.param(["--address", "127.0.0.1:99999"], None, id="address-port-range"),
    pytest.param(["--address", "ftp://host:1"], None, id="address-scheme"),
    pytest.param(["--address", "127.0.0.1:1"], None, id="address-refused"),
    pytest.param(["--address", ""], None, id="address-empty"),
    pytest.param(["--warm-start", "/nonexistent/results"], None, id="warm-start-missing"),
    pytest.param(["--name", "ok_name", "--num-samples", "3"], "valid overrides",
                 id="valid-overrides"),
]


@pytest.mark.usefixtures("no_launch")
@pytest.mark.parametrize(("args", "valid"), SWEEP_OPTIONS)
def test_sweep_options(tmp_path: Path, args: list[str], valid: str | None) -> None:
    space = tmp_path / "s.yaml"
    space.write_bytes(_space_text("demo_mnist1d.yaml"))
    start = time.perf_counter()
    out = invoke("sweep", space, *args)
    if valid is None:
        check_refused(out)
        assert time.perf_counter() - start < FAST_S, str(out)
    else:
        assert isinstance(out.exception, Launched), str(out)


@pytest.mark.usefixtures("no_launch")
def test_valid_spaces_reach_the_launch_and_validate(tmp_path: Path) -> None:
    """The unmutated spaces: the base every rule starts from is itself accepted."""
    for p in SPACES:
        v, s = both(p)
        check_agree(v, s, "a shipped space")
    check_accepted(invoke("validate", SPACES[0], "--samples", "1"),
                   "sampled configurations are valid")
