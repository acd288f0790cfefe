"""Search-space schema, error messages and the compiled define-by-run function."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest

from pruning_core.base.errors import ConfigError
from sweeps.tune.space import depth_ramp, load_space, parse_space, trial_dict, validate_space

from .conftest import REPO, write_space

SPACES = sorted((REPO / "search_spaces").glob("*.yaml"))


def _as_written(value: object) -> object:
    """A validated value as a space writes it: prune.allocation by its name, an N:M pattern as
    "n:m", no pattern as "none"."""
    if isinstance(value, dict):
        return value["name"] if "name" in value else f"{value['n']}:{value['m']}"
    return "none" if value is None else value


@pytest.mark.parametrize("path", SPACES, ids=[p.stem for p in SPACES])
def test_shipped_spaces_validate(path: Path) -> None:
    space = load_space(path)
    configs = validate_space(space, n=16)
    # every value of every unconditional choice param was drawn, and validated, at least once
    dumps = [c.model_dump() for c in configs]
    for key, p in space.params.items():
        if p.type != "choice" or p.when:
            continue
        drawn = set()
        for d in dumps:
            for part in key.split("."):
                d = d[part]
            drawn.add(_as_written(d))
        assert drawn == set(p.values), key


def test_when_conditions_follow_the_drawn_choice() -> None:
    space = load_space(REPO / "search_spaces/demo_mnist1d.yaml")
    configs = validate_space(space, n=64)
    for cfg in configs:
        has_t = "temperature" in cfg.prune.criterion_options
        assert has_t == (cfg.prune.criterion == "grasp")
        if cfg.prune.schedule == "one_shot":
            assert cfg.prune.steps == 1  # the default: steps not drawn
    # every choice value was drawn at least once
    assert {c.prune.criterion for c in configs} == {"magnitude", "snip", "synflow", "grasp",
                                                     "random"}
    assert {c.prune.allocation.name for c in configs} == {"global", "uniform", "erk"}


BAD = """\
name: bad
objectives:
  - {metric: test_accuracy, mode: max}
params:
  prune.criterion: {type: choice, values: [snip, magnitude]}
  prune.sparsity: {type: float, low: 0.5, hgh: 0.9}
"""


def test_error_names_field_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_space(write_space(tmp_path / "s.yaml", BAD))
    msg = str(exc.value)
    assert "params.prune.sparsity.hgh (line 6): unknown key" in msg
    assert "params.prune.sparsity.high (line 6): Field required" in msg


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("objectives: [{metric: acc, mode: max}]", "objectives (line 2): unknown metric 'acc'"),
        ("objectives: [{metric: test_accuracy, mode: up}]", "objectives.0.mode (line 2)"),
        ("sampler: {name: cmaes}", "sampler.name (line 3)"),
        ("budget: {num_samples: 0}", "budget.num_samples (line 3)"),
        ("resources: {cpu: 1, gpus: 1}", "resources.gpus (line 3): unknown key"),
        ("scheduler: {metric: flops, mode: min}", "scheduler.metric (line 3): ASHA acts on"),
        ("params:\n  prune.steps: {type: int, low: 3, high: 1}",
         "params.prune.steps (line 4): low (3) must be < high (1)"),
        ("params:\n  train.lr: {type: float, low: 0, high: 1, log: true}",
         "params.train.lr (line 4): log=true needs low > 0"),
        ("params:\n  prune.steps: {type: int, low: 1, high: 3, when: {prune.criterion: snip}}",
         "params.prune.steps.when.prune.criterion (line 4): 'prune.criterion' is neither"),
        ("params:\n  prune.criterion: {type: choice, values: [snip]}\n"
         "  prune.steps: {type: int, low: 1, high: 3, when: {prune.criterion: grasp}}",
         "params.prune.steps.when.prune.criterion (line 5): 'grasp' is not one of ['snip']"),
        ("fixed: {prune: {sparsity: 0.5}}\nparams:\n"
         "  prune.sparsity: {type: float, low: 0.1, high: 0.9}",
         "params.prune.sparsity (line 5): also set in fixed"),
        ("sampler: {name: grid}\nparams:\n  prune.sparsity: {type: float, low: 0.1, high: 0.9}",
         "sampler.name (line 3): params.prune.sparsity: the grid sampler needs choice"),
        ("params:\n  prune.sparsity: {type: float, low: 0.1, high: 0.9}\n"
         "  prune.sparsity: {type: float, low: 0.1, high: 0.8}",
         "params.prune.sparsity (line 5): duplicate key (first at line 4)"),
    ],
)
def test_schema_errors(tmp_path: Path, snippet: str, expected: str) -> None:
    text = "name: t\n" + (
        snippet if snippet.startswith("objectives") else
        "objectives: [{metric: test_accuracy, mode: max}]\n" + snippet
    ) + "\n"
    with pytest.raises(ConfigError) as exc:
        load_space(write_space(tmp_path / "s.yaml", text))
    assert expected in str(exc.value)


def test_sampled_config_errors_name_the_trial_field() -> None:
    space = parse_space({
        "name": "t", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "params": {"prune.criterion": {"type": "choice", "values": ["snip", "magnitde"]}},
    })
    with pytest.raises(ConfigError, match="unknown criterion 'magnitde'"):
        validate_space(space, n=4)


def test_validation_draws_both_ends_of_every_range() -> None:
    """A top a random draw seldom reaches: prune.steps up to 10,001 (one past the limit)."""
    space = parse_space({
        "name": "t", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "fixed": {"prune": {"schedule": "linear"}},
        "params": {"prune.steps": {"type": "int", "low": 1, "high": 10_001},
                   "prune.sparsity": {"type": "float", "low": 0.5, "high": 0.9}}})
    drawn = space.sample(2, seed=0)
    steps = [d["prune"]["steps"] for d in drawn]
    sparsity = [d["prune"]["sparsity"] for d in drawn]
    assert {1, 10_001} <= set(steps) and {0.5, 0.9} <= set(sparsity)
    with pytest.raises(ConfigError, match="10001 steps is more than the 10000 allowed"):
        validate_space(space, n=2)
    stepped = parse_space({  # an int range with a step: the top is the last reachable value
        "name": "t", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "params": {"train.epochs": {"type": "int", "low": 1, "high": 10, "step": 4}}})
    assert {d["train"]["epochs"] for d in stepped.sample(0)} == {1, 9}


def _space(param: dict) -> dict:
    return {
        "name": "lw", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "fixed": {"model": {"name": "cnn1d"}, "data": {"name": "mnist1d"}},
        "params": {"prune.allocation.layer_sparsity": param},
    }


def test_per_layer_expands_one_param_per_prunable_layer() -> None:
    space = parse_space(_space({"type": "per_layer", "low": 0.5, "high": 0.9}))
    assert [n for n, _ in space.layers] == ["features.0.weight", "features.2.weight",
                                            "features.4.weight", "classifier.1.weight"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    space.define_by_run()(trial)
    assert len(trial.params) == 4
    for cfg in validate_space(space, n=8):
        ls = cfg.prune.allocation.layer_sparsity
        assert cfg.prune.allocation.name == "explicit"
        assert isinstance(ls, dict) and len(ls) == 4
        assert all(0.5 <= s <= 0.9 for s in ls.values())


def test_depth_ramp_is_three_params_mapped_over_depth() -> None:
    space = parse_space(_space({"type": "depth_ramp", "start": [0.1, 0.3], "end": [0.8, 0.95],
                                "curvature": [0.5, 2.0]}))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    trial = study.ask()
    consts = space.define_by_run()(trial)
    assert sorted(trial.params) == ["search/layer_ramp/curvature", "search/layer_ramp/end",
                                    "search/layer_ramp/start"]
    p = trial.params
    layer_vals = [consts[f"prune/allocation/layer_sparsity/{n}"] for n, _ in space.layers]
    depths = [d for _, d in space.layers]
    expected = [p["search/layer_ramp/start"] + (p["search/layer_ramp/end"]
                - p["search/layer_ramp/start"]) * d ** p["search/layer_ramp/curvature"]
                for d in depths]
    assert layer_vals == pytest.approx(expected)
    assert layer_vals == sorted(layer_vals)  # start < end: sparsity grows with depth
    assert depth_ramp([0.0, 0.5, 1.0], 0.2, 0.8) == pytest.approx([0.2, 0.5, 0.8])
    assert depth_ramp([1.0], 0.9, 1.5) == [0.999]  # clipped below 1


def test_define_by_run_pickles_and_samplers_build() -> None:
    base = load_space(REPO / "search_spaces/demo_mnist1d.yaml").model_dump()
    for name in ("tpe", "nsga2", "gp", "random"):
        space = parse_space({**base, "sampler": {"name": name, "seed": 0}})
        fn = pickle.loads(pickle.dumps(space.define_by_run()))
        study = optuna.create_study(directions=["maximize", "maximize"],
                                    sampler=space.make_sampler())
        trial = study.ask()
        fn(trial)
        assert "prune/criterion" in trial.params
    grid = parse_space({
        "name": "g", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
        "sampler": {"name": "grid"},
        "params": {"prune.criterion": {"type": "choice", "values": ["snip", "magnitude"]},
                   "prune.steps": {"type": "int", "low": 1, "high": 3}},
    })
    assert grid.grid() == {"prune/criterion": ["snip", "magnitude"], "prune/steps": [1, 2, 3]}
    assert isinstance(grid.make_sampler(), optuna.samplers.GridSampler)


def test_trial_dict_merges_name_shorthand() -> None:
    base = {"prune": {"allocation": "erk", "timing": {"name": "during", "prune_epochs": [1]}}}
    out = trial_dict(base, {"prune": {"allocation": {"erk_power": 0.5}, "timing": "after"},
                            "search": {"x": 1}})
    assert out == {"prune": {"allocation": {"name": "erk", "erk_power": 0.5},
                             "timing": {"name": "after", "prune_epochs": [1]}}}
