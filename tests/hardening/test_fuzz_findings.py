"""Issue 8's fuzz-suite findings, one direct test per class (so each fix stays tested if the
fuzz rules change): control characters in YAML, errors inside ``run()`` after the progress
bar, unbounded counts, non-finite numbers, booleans read as numbers, ``validate`` lacking
``sweep``'s ASHA-vs-plan check, and path components past NAME_MAX."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pruning_core.base.errors import ConfigError
from pruning_core.config import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_THREADS,
    bool_as_number,
    parse_yaml,
    read_yaml_file,
)
from pruning_core.trials.registries import load_trial_config
from pruning_core.trials.tuned import LayerEntry
from sweeps.cli import app
from sweeps.results.outputs import NAME_MAX, check_output
from sweeps.tune.launch import with_overrides
from sweeps.tune.space import parse_space, validate_space

from .conftest import assert_one_line_error

#: a trial that runs in well under a second (0 epochs)
TINY: dict[str, Any] = {
    "seed": 0,
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "data": {"name": "digits", "batch_size": 64, "train_limit": 128, "test_limit": 64},
    "train": {"epochs": 0, "lr": 0.01, "device": "cpu"},
    "prune": {"criterion": "magnitude", "sparsity": 0.5},
}

SPACE: dict[str, Any] = {
    "name": "findings",
    "objectives": [{"metric": "test_accuracy", "mode": "max"}],
    "sampler": {"name": "random", "seed": 0},
    "budget": {"num_samples": 2},
    "scheduler": {"metric": "test_accuracy", "mode": "max", "grace_period": 2},
    "fixed": {"model": {"name": "mlp", "options": {"hidden": [16]}},
              "data": {"name": "digits"}, "train": {"epochs": 3, "device": "cpu"}},
    "params": {"prune.sparsity": {"type": "float", "low": 0.3, "high": 0.9}},
    "wandb": {"mode": "disabled"},
}


def _with(doc: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def _refused(data: dict[str, Any], *needles: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_trial_config(data)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ----------------------------------------------------------------------------- 1. NUL / control
@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\ufffe"])
def test_control_character_in_yaml_is_one_line_naming_file_and_line(tmp_path: Path,
                                                                   char: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"seed: 0\ntrain:\n  epochs: 1{char}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_yaml_file(path)
    msg = str(info.value)
    assert str(path) in msg and "(line 3)" in msg and "unacceptable character" in msg, msg
    assert "\n" not in msg


def test_control_character_through_set_and_cli(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--set x \(line 1\)"):
        parse_yaml("\x00", "--set x")
    path = tmp_path / "c.yaml"
    path.write_bytes(b"seed: 0\x00\n")
    assert_one_line_error(CliRunner().invoke(app, ["run", str(path)]), "line 1", "c.yaml")


# ----------------------------------------------------------------------------- 2. run's progress
@pytest.mark.parametrize("sets", [
    ["prune.allocation=explicit"],
    ["data.name=cifar10", "data.root=/nonexistent"],
    ["model.name=tv:no_such_net"],
    ["prune.timing=imp", "prune.timing.rewind_epoch=5", "train.epochs=2"],
    ["prune.timing=during", "prune.timing.prune_epochs=[5]", "train.epochs=2"],
    ["model.name=cnn1d"],  # a 1-D conv net meets 8x8 digit images
], ids=["explicit-no-vector", "cifar-missing-root", "tv-unknown", "imp-rewind-past-end",
        "during-past-end", "model-data-mismatch"])
def test_error_inside_run_leaves_stdout_empty(tmp_path: Path, sets: list[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    args = ["run", str(cfg)]
    for item in sets:
        args += ["--set", item]
    assert_one_line_error(CliRunner().invoke(app, args))


def test_successful_run_keeps_its_progress_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(_with(TINY, "train.epochs", 1)))
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("magnitude → 0.5") and "1/1" in first and "test acc" in first, first
    assert "trial result" in res.stdout


# ----------------------------------------------------------------------------- 3. upper bounds
@pytest.mark.parametrize(("key", "limit"), [
    ("train.epochs", MAX_EPOCHS), ("train.warmup_epochs", MAX_EPOCHS),
    ("prune.timing.pretrain_epochs", MAX_EPOCHS), ("train.threads", MAX_THREADS),
    ("data.batch_size", MAX_BATCH), ("data.eval_batch_size", MAX_BATCH),
])
def test_counts_have_upper_bounds(key: str, limit: int) -> None:
    load_trial_config(_with(TINY, key, limit))  # the bound itself is accepted
    _refused(_with(TINY, key, limit + 1), key, f"less than or equal to {limit}")
    _refused(_with(TINY, key, 10**30), key)


# ----------------------------------------------------------------------------- 4. non-finite
@pytest.mark.parametrize("key", ["train.lr", "train.weight_decay",
                                 "prune.allocation.erk_power"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_numbers_are_refused(key: str, value: float) -> None:
    _refused(_with(TINY, key, value), key)


# ----------------------------------------------------------------------------- 5. bool as number
@pytest.mark.parametrize("key", ["seed", "train.epochs", "train.lr", "train.threads",
                                 "data.batch_size", "data.train_limit", "prune.steps",
                                 "prune.sparsity", "prune.score_batches",
                                 "prune.allocation.erk_power", "prune.timing.rewind_epoch"])
@pytest.mark.parametrize("flag", [True, False])
def test_bool_is_not_a_number_in_configs(key: str, flag: bool) -> None:
    _refused(_with(TINY, key, flag), key, f"{str(flag).lower()} where a number is expected")


def test_bool_items_of_number_lists_are_refused_and_real_bools_kept() -> None:
    vec = _with(TINY, "prune.allocation", {"name": "explicit", "layer_sparsity": [0.5, True]})
    _refused(vec, "prune.allocation.layer_sparsity.1")
    _refused(_with(TINY, "prune.timing", {"name": "during", "prune_epochs": [0, True]}),
             "prune.timing.prune_epochs.1")
    cfg = load_trial_config(_with(_with(TINY, "train.compile", False),
                                  "model.weights_strict", False))  # bool fields take bools
    assert cfg.train.compile is False and cfg.model.weights_strict is False
    # the annotation walk itself
    assert bool_as_number([int | None], True) == ((), True)
    assert bool_as_number([bool], True) is None
    assert bool_as_number([dict[str, Any]], {"a": True}) is None
    assert bool_as_number([dict[str, float] | list[float] | None], {"a": False}) == (("a",),
                                                                                      False)


@pytest.mark.parametrize("key", ["budget.num_samples", "budget.max_concurrent",
                                 "budget.time_budget_s", "resources.cpu", "sampler.seed",
                                 "scheduler.grace_period", "params.prune.sparsity.high"])
def test_bool_is_not_a_number_in_spaces(key: str) -> None:
    if key.startswith("params."):
        space = copy.deepcopy(SPACE)
        space["params"]["prune.sparsity"]["high"] = True
    else:
        space = _with(SPACE, key, True)
    with pytest.raises(ConfigError, match="true where a number is expected"):
        parse_space(space)


def test_bool_is_not_a_number_in_schedules() -> None:
    good = {"name": "fc", "kind": "linear", "depth": 0.5, "numel": 10, "shape": [2, 5],
            "sparsity": 0.5}
    LayerEntry.model_validate(good)
    for key in ("depth", "numel", "sparsity"):
        with pytest.raises(ValueError, match="true where a number is expected"):
            LayerEntry.model_validate({**good, key: True})
    with pytest.raises(ValueError, match="true where a number is expected"):
        LayerEntry.model_validate({**good, "shape": [2, True]})


# ----------------------------------------------------------------------------- 6. validate = sweep
def test_validate_runs_sweeps_asha_plan_check(tmp_path: Path) -> None:
    space = _with(SPACE, "storage", str(tmp_path / "results"))
    validate_space(parse_space(space), n=2)  # grace 2 <= 3 epochs: fine
    late = parse_space(_with(space, "scheduler.grace_period", 10**30))
    with pytest.raises(ConfigError, match=r"scheduler.grace_period: .* past the fixed config's "
                                          r"plan \(3 training epochs\)"):
        validate_space(late, n=2)


def test_validate_cli_refuses_fixed_epochs_true(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_with(SPACE, "fixed.train.epochs", True)))
    assert_one_line_error(CliRunner().invoke(app, ["validate", str(path)]),
                          "fixed: train.epochs: true where a number is expected")


# ----------------------------------------------------------------------------- 7. NAME_MAX
def test_long_path_components_are_refused(tmp_path: Path) -> None:
    check_output("--json", tmp_path / ("x" * NAME_MAX))  # the limit itself is fine
    with pytest.raises(ConfigError, match=f"--json .* is {NAME_MAX + 1} bytes"):
        check_output("--json", tmp_path / ("x" * (NAME_MAX + 1)) / "out.json")
    with pytest.raises(ConfigError, match="is 256 bytes"):  # bytes, not characters
        check_output("--json", tmp_path / ("é" * 128))


def test_long_storage_and_name_are_refused_before_launch(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="^storage: .* 5000 bytes"):
        validate_space(parse_space(_with(SPACE, "storage", "x" * 5000)), n=1)
    # no storage: results/<name>, so the name is at fault
    with pytest.raises(ConfigError, match="^name: .* 300 bytes"):
        validate_space(parse_space(_with(SPACE, "name", "y" * 300)), n=1)
    space = parse_space(_with(SPACE, "storage", "results/findings"))
    with pytest.raises(ConfigError, match="^--name: 300 bytes"):
        with_overrides(space, name="z" * 300)
    assert with_overrides(space, name="z" * NAME_MAX).name == "z" * NAME_MAX


def test_sweep_default_threads_stay_within_the_bound() -> None:
    """A trial's default ``train.threads`` is its ``resources.cpu``: a CPU count past
    ``MAX_THREADS`` (refused later against the cluster) must not make every trial invalid."""
    from sweeps.tune.launch import default_threads

    assert default_threads(parse_space(_with(SPACE, "resources.cpu", 4))) == 4
    assert default_threads(parse_space(_with(SPACE, "resources.cpu", 0.5))) == 1
    assert default_threads(parse_space(_with(SPACE, "resources.cpu", 1e30))) == MAX_THREADS
