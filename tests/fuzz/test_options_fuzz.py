"""Issue 21: options a user writes that reach a dependency's constructor, fuzzed.

- The two findings, through ``prunetune validate`` and ``prunetune sweep`` (in-process, the
  launch stubbed to ``Launched`` as in ``test_space_fuzz.py``): ``sampler.options`` of the
  wrong type (``n_startup_trials: "ten"`` passed ``validate`` and crashed the sweep inside
  Optuna) and a storage URL part nothing uses (``file://...?bogus=1``), with their relatives
  (a fragment, a query key pyarrow does not take, an ignored SQLite URL argument, a W&B project
  name W&B refuses).
- The property: for every sampler and every scheduler, a string, a list or a null in place of
  each numeric option (read from the sampler's constructor signature, and from the space's
  ``scheduler`` section) gives one ``ConfigError`` line naming the option, or, for a null the
  option's type admits, is accepted. The bulk through ``validate_space`` directly; a sample
  through the real ``prunetune`` executable.
"""

from __future__ import annotations

import copy
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pruning_core.base.errors import ConfigError
from sweeps.tune.option_types import accepts, describe, option_types, python_only
from sweeps.tune.space import (
    SAMPLER_RESERVED,
    SAMPLERS,
    SamplerSpec,
    SchedulerSpec,
    parse_space,
    sampler_class,
    validate_space,
)

from .conftest import Launched, check_refused, guarded, invoke
from .mutate import SPACES, dump

DEMO = yaml.safe_load((SPACES[0].parent / "demo_mnist1d.yaml").read_text())
#: seconds a refused ``sweep`` may take in-process (pre-launch validation only)
FAST_S = 5.0


def _demo(**over: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DEMO)
    doc.update(over)
    return doc


def _nothing_started(cwd: Path) -> None:
    assert not list(cwd.rglob("tune")) and not (cwd / "wandb").exists(), \
        sorted(str(p) for p in cwd.rglob("*"))


# ----------------------------------------------------------------------------- the findings
FINDINGS: list[Any] = [
    pytest.param(lambda t: {"sampler": {"name": "tpe", "seed": 0,
                                        "options": {"n_startup_trials": "ten"}}},
                 ("sampler.options.n_startup_trials: 'ten' is a str; tpe needs an int",),
                 id="tpe-n_startup_trials-ten"),
    pytest.param(lambda t: {"sampler": {"name": "nsga2", "seed": 0,
                                        "options": {"crossover_prob": "high"}}},
                 ("sampler.options.crossover_prob", "nsga2 needs a number"),
                 id="nsga2-crossover_prob-str"),
    pytest.param(lambda t: {"sampler": {"name": "tpe", "options": {"gamma": "lambda n: 1"}}},
                 ("sampler.options.gamma", "set it from Python"), id="tpe-gamma-str"),
    pytest.param(lambda t: {"storage": f"file://{t}/results/q?bogus=1"},
                 ("storage", "file:// takes no query string ('?bogus=1'"), id="file-query"),
    pytest.param(lambda t: {"storage": f"file://{t}/results/q#old"},
                 ("storage", "fragment ('#old')"), id="file-fragment"),
    pytest.param(lambda t: {"storage": "s3://bucket/q?region=us-east-1&bogus=1"},
                 ("storage: Unexpected query parameter in S3 URI: 'bogus'",), id="s3-query"),
    pytest.param(lambda t: {"study": {"storage": f"sqlite:///{t}/study.db?bogus=1"}},
                 ("study.storage", "'bogus' are not accepted"), id="sqlite-query"),
    pytest.param(lambda t: {"wandb": {"project": "team/sweeps", "mode": "offline"}},
                 ("wandb.project", "Invalid project name"), id="wandb-project"),
]


@pytest.mark.usefixtures("no_launch")
@pytest.mark.parametrize(("change", "needles"), FINDINGS)
def test_findings_refused_by_validate_and_sweep(tmp_path: Path, change: Any,
                                                needles: tuple[str, ...]) -> None:
    space = tmp_path / "s.yaml"
    space.write_bytes(dump(_demo(**change(tmp_path))))
    v = invoke("validate", space, timeout=10)
    s = invoke("sweep", space, timeout=8)
    check_refused(v, *needles)
    assert check_refused(s, *needles) == v.stderr.strip()
    assert not isinstance(s.exception, Launched) and s.seconds < FAST_S, str(s)
    _nothing_started(tmp_path)


@pytest.mark.usefixtures("no_launch")
def test_valid_options_and_storage_still_reach_the_launch(tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    space.write_bytes(dump(_demo(
        sampler={"name": "tpe", "seed": 0, "options": {"n_startup_trials": 4,
                                                       "multivariate": True}},
        storage=f"file://{tmp_path}/results/demo",
        study={"storage": f"sqlite:///{tmp_path}/study.db?timeout=30"})))
    assert invoke("validate", space).code == 0
    assert isinstance(invoke("sweep", space).exception, Launched)


# ----------------------------------------------------------------------------- the property
#: a string, a list and a null: each in place of every numeric option
BAD: dict[str, Any] = {"str": "ten", "list": [1, 2], "null": None}
SMALL: dict[str, Any] = {
    "name": "opts", "objectives": [{"metric": "test_accuracy", "mode": "max"},
                                   {"metric": "sparsity", "mode": "max"}],
    "budget": {"num_samples": 2},
    "fixed": {"model": {"name": "mlp", "options": {"hidden": [8]}},
              "data": {"name": "digits", "train_limit": 64, "test_limit": 32},
              "train": {"epochs": 4, "device": "cpu"}},
    "params": {"prune.criterion": {"type": "choice", "values": ["magnitude", "random"]}},
    "wandb": {"mode": "disabled"},
}
SCHEDULER_BASE = {"grace_period": 1, "reduction_factor": 2, "max_t": 3}


def _numeric(types: dict[str, Any]) -> dict[str, Any]:
    return {n: tp for n, tp in types.items()
            if (accepts(1, tp) or accepts(0.5, tp)) and not python_only(tp)}


def _sampler_cases() -> list[Any]:
    cases = []
    seed = SamplerSpec.model_fields["seed"].annotation
    for name in SAMPLERS:
        options, _ = option_types(sampler_class(name))
        numeric = {n: tp for n, tp in _numeric(options).items() if n not in SAMPLER_RESERVED}
        for option, tp in {**numeric, "seed": seed}.items():
            path = "sampler.seed" if option == "seed" else f"sampler.options.{option}"
            for kind, value in BAD.items():
                sampler = {"name": name, "seed": 0, "options": {}}
                if option == "seed":
                    sampler["seed"] = value
                else:
                    sampler["options"] = {option: value}
                cases.append(pytest.param({"sampler": sampler}, path, tp, value,
                                          id=f"{name}:{option}={kind}"))
    return cases


def _scheduler_cases() -> list[Any]:
    cases = []
    names = typing.get_args(SchedulerSpec.model_fields["name"].annotation)
    fields = _numeric({n: f.annotation for n, f in SchedulerSpec.model_fields.items()})
    for name in names:
        extra = {"metric": "test_accuracy", "mode": "max"} if name == "asha" else {}
        for field, tp in fields.items():
            for kind, value in BAD.items():
                scheduler = {"name": name, **extra, **SCHEDULER_BASE, field: value}
                cases.append(pytest.param({"scheduler": scheduler}, f"scheduler.{field}", tp,
                                          value, id=f"{name}:{field}={kind}"))
    return cases


SAMPLER_CASES = _sampler_cases()
SCHEDULER_CASES = _scheduler_cases()


def test_the_property_covers_every_sampler_and_scheduler() -> None:
    """The enumeration is read from the code, so it must reach what the issue names."""
    ids = {c.id for c in SAMPLER_CASES + SCHEDULER_CASES}
    assert {i.split(":")[0] for i in ids} == set(SAMPLERS) | {"asha", "dominated"}
    for must in ("tpe:n_startup_trials=str", "tpe:n_ei_candidates=list", "gp:n_startup_trials=null",
                 "nsga2:population_size=str", "nsga2:crossover_prob=list", "random:seed=str",
                 "asha:grace_period=null", "dominated:reduction_factor=str"):
        assert must in ids, must


@pytest.mark.parametrize(("change", "path", "tp", "value"), SAMPLER_CASES + SCHEDULER_CASES)
def test_a_string_list_or_null_for_a_numeric_option(tmp_path: Path, change: dict[str, Any],
                                                     path: str, tp: Any, value: Any) -> None:
    doc = {**copy.deepcopy(SMALL), **change, "storage": str(tmp_path / "results")}
    if value is None and accepts(None, tp):  # null is this option's documented default
        assert validate_space(parse_space(doc), n=1)
        return
    with pytest.raises(ConfigError) as err:
        validate_space(parse_space(doc), n=1)
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    assert msg.startswith(f"{path}: ") or msg.startswith(f"{path} "), msg
    if path.startswith("sampler.options."):
        assert msg.endswith(f"needs {describe(tp)}") or "leave the option out" in msg, msg


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(case=st.sampled_from([c for c in SAMPLER_CASES if "options." in c.values[1]]),
       value=st.text(max_size=8) | st.lists(st.integers() | st.floats(), max_size=3)
       | st.none() | st.booleans() | st.dictionaries(st.text(max_size=3), st.integers(),
                                                      max_size=2))
def test_any_non_numeric_value_is_refused_by_make_sampler(case: Any, value: Any) -> None:
    """Beyond the three representatives: any string, list, dict, bool or null a YAML file can
    hold, in place of a numeric sampler option, is one line naming it (or, null, accepted
    where the annotation admits it); the sampler is never built with it."""
    change, path, tp, _ = case.values
    sampler = {**change["sampler"], "options": {path.rsplit(".", 1)[1]: value}}
    space = parse_space({**SMALL, "sampler": sampler, "storage": "unused"})
    if accepts(value, tp):
        assert value is None
        space.make_sampler()
        return
    with pytest.raises(ConfigError) as err:
        space.make_sampler()
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


# ----------------------------------------------------------------------------- real process
REAL: list[Any] = [
    pytest.param("validate", {"sampler": {"name": "tpe", "seed": 0,
                                          "options": {"n_startup_trials": "ten"}}},
                 "sampler.options.n_startup_trials", id="validate-tpe-ten"),
    pytest.param("sweep", {"storage": "file://{t}/results/q?bogus=1"}, "storage",
                 id="sweep-file-query"),
    pytest.param("sweep", {"sampler": {"name": "nsga2", "options": {"population_size": [1]}}},
                 "sampler.options.population_size", id="sweep-nsga2-list"),
    pytest.param("validate", {"scheduler": {"name": "asha", "metric": "test_accuracy",
                                            "mode": "max", "grace_period": None}},
                 "scheduler.grace_period", id="validate-asha-null"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "change", "needle"), REAL)
def test_real_executable_one_line(tmp_path: Path, command: str, change: dict[str, Any],
                                  needle: str) -> None:
    """A sample through ``.venv/bin/prunetune`` (its own process and logging): one line,
    exit 2, no traceback, nothing started, and the same line as in-process."""
    change = yaml.safe_load(yaml.safe_dump(change).replace("{t}", str(tmp_path)))
    space = tmp_path / "s.yaml"
    space.write_bytes(dump({**SMALL, **change, "storage": change.get(
        "storage", str(tmp_path / "results"))}))
    out = guarded(command, space, limit_s=60)
    line = check_refused(out, needle)
    assert line == check_refused(invoke(command, space))
    _nothing_started(tmp_path)
