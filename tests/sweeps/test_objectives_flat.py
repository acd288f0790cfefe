"""The one Objective (results and a sweep's space) and the one flatten (issue 17, item 4)."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from pruning_core.base.flat import flatten
from sweeps.results.flags import chance_threshold, class_count, num_classes
from sweeps.results.objectives import Objective, parse_objective


class _Space(BaseModel):
    model_config = ConfigDict(extra="forbid")
    objectives: list[Objective]


def test_objective_from_a_space_entry_and_from_the_command_line_is_one_value() -> None:
    space = _Space.model_validate({"objectives": [{"metric": "test_accuracy", "mode": "max"},
                                                  {"metric": "flops", "mode": "min"}]})
    assert space.objectives == [parse_objective("test_accuracy:max"),
                                Objective("flops", "min")]
    assert [o.metric for o in space.objectives] == ["test_accuracy", "flops"]
    assert str(space.objectives[1]) == "flops:min"
    assert space.model_dump() == {"objectives": [{"metric": "test_accuracy", "mode": "max"},
                                                 {"metric": "flops", "mode": "min"}]}


@pytest.mark.parametrize(("entry", "says"), [
    ({"metric": "a"}, r"objectives\.0\.mode\n  Field required"),
    ({"mode": "max"}, r"objectives\.0\.metric\n  Field required"),
    ({"metric": "a", "mode": "up"}, r"objectives\.0\.mode\n  Input should be 'max' or 'min'"),
    ({"metric": "a", "mode": "max", "weight": 2}, r"objectives\.0\.weight\n  Extra inputs"),
    ({"metric": "", "mode": "max"}, r"objectives\.0\.metric\n  String should have at least 1"),
    ("a:max", r"objectives\.0\n  Input should be a valid dictionary"),
])
def test_a_bad_space_objective_names_its_field(entry: object, says: str) -> None:
    """Each error names the objective's field, as every other section of a space does (the
    space's YAML layer turns these into one line with the line number: test_space.py)."""
    with pytest.raises(ValidationError, match=says):
        _Space.model_validate({"objectives": [entry]})


def test_flatten_defaults_keep_lists_and_empty_dicts_as_leaves() -> None:
    d = {"prune": {"sparsity": 0.9, "allocation": {"name": "erk", "erk_power": 1.0}},
         "layers": ["a", "b"], "options": {}, "seed": 3}
    assert flatten(d) == {"prune.sparsity": 0.9, "prune.allocation.name": "erk",
                          "prune.allocation.erk_power": 1.0, "layers": ["a", "b"],
                          "options": {}, "seed": 3}
    assert flatten({"a": {"b": 1}}, "search", sep="/") == {"search/a/b": 1}


def test_flatten_hooks_choose_what_descends_and_how_a_leaf_is_stored() -> None:
    d = {"data": {"options": {"n": 2}, "name": "x"}, "tags": ["t"], "empty": []}
    got = flatten(d, descend=lambda k, v: isinstance(v, dict) and k != "data.options",
                  leaf=lambda k, v: (json.dumps(v) if v else None)
                  if isinstance(v, dict | list) else v)
    assert got == {"data.options": '{"n": 2}', "data.name": "x", "tags": '["t"]',
                   "empty": None}


def test_the_chance_rule_and_the_class_count_sources() -> None:
    assert chance_threshold(10) == pytest.approx(0.12)  # 1/10 + 0.02
    assert chance_threshold(100) == pytest.approx(0.03)
    assert class_count({"num_classes": 4}) == (4, "the num_classes column")
    assert class_count({"config.data.options": '{"num_classes": 3}'}) == (
        3, "num_classes in config.data.options")
    assert class_count({"config.data.name": "cifar100"})[0] == 100
    assert class_count({"config.data.name": "mine:data"}) == (None, None)
    assert num_classes({"num_classes": 1, "config.data.name": "mnist"}) == 10  # 1 is no K
