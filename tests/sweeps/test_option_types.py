"""Issue 21: a user's dict checked against the constructor it reaches, before anything starts.

The checker (``sweeps/tune/option_types.py``) on hand-made signatures and on the real Optuna
samplers' and Ray's ASHA signatures; the sampler options as ``make_sampler`` checks them; the
parts of a storage URL that are used (and the refusal of those that are not); the RDB study URL
as SQLAlchemy reads it; the ``wandb:`` settings as W&B checks them. No Ray is started.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import optuna
import pytest

from pruning_core.base.errors import ConfigError
from sweeps.tune.option_types import accepts, check_options, describe, option_types
from sweeps.tune.space import (
    SAMPLER_RESERVED,
    SAMPLERS,
    WandbSpec,
    check_storage_syntax,
    check_study_storage,
    check_study_url,
    check_wandb,
    parse_space,
    probe_sampler,
    sampler_class,
)


class _Thing:
    pass


def _target(*, n: int = 1, x: float = 0.5, flag: bool = False, maybe: int | None = None,
            kind: Literal["a", "b"] = "a", fn: Callable[[int], int] | None = None,
            seq: Sequence[float] = (), pair: tuple[int, str] = (0, ""),
            table: dict[str, int] | None = None, thing: _Thing | None = None,
            free: Any = None, bare=None) -> None:  # bare: an unannotated option
    pass


# ----------------------------------------------------------------------------- the checker
@pytest.mark.parametrize(("name", "good", "bad"), [
    ("n", [0, -3, 10**30], ["ten", "10", [1], None, True, 1.0, 1.5, {"a": 1}]),
    ("x", [0, 2, 0.25, -1e300], ["0.5", None, False, math.nan, math.inf, -math.inf, [0.5]]),
    ("flag", [True, False], [1, 0, "true", None]),
    ("maybe", [None, 3], ["3", 3.0, False, []]),
    ("kind", ["a", "b"], ["c", 1, None, ["a"]]),
    ("fn", [None, abs, lambda n: n], ["abs", 1, [abs]]),
    ("seq", [[], [1, 2.5], (0.1,)], ["12", [1, "2"], {1.0}, None, {"a": 1.0}]),
    ("pair", [(1, "a"), [1, "a"]], [(1,), ("a", 1), (1, "a", 2)]),
    ("table", [None, {}, {"a": 1}], [{"a": "1"}, {1: 1}, [("a", 1)]]),
    ("thing", [None, _Thing()], ["thing", {}, 1]),
    ("free", [None, "x", [1], {"a": object()}], []),
    ("bare", [None, "x", 1, [1]], []),
])
def test_each_annotation_admits_its_values_only(name: str, good: list[Any],
                                                bad: list[Any]) -> None:
    types, var_kw = option_types(_target)
    assert not var_kw and set(types) == {"n", "x", "flag", "maybe", "kind", "fn", "seq", "pair",
                                         "table", "thing", "free", "bare"}
    for value in good:
        assert accepts(value, types[name]), (name, value)
        check_options(_target, {name: value}, where="o", owner="t")
    for value in bad:
        assert not accepts(value, types[name]), (name, value)
        with pytest.raises(ConfigError, match=rf"^o\.{name}: "):
            check_options(_target, {name: value}, where="o", owner="t")


@pytest.mark.parametrize(("options", "message"), [
    ({"n": "ten"}, "o.n: 'ten' is a str; t needs an int"),
    ({"n": None}, "o.n: null is not accepted; t needs an int (leave the option out for its "
                  "default)"),
    ({"n": [1, 2]}, "o.n: [1, 2] is a list; t needs an int"),
    ({"n": True}, "o.n: true is a bool; t needs an int"),
    ({"x": math.nan}, "o.x: nan is not a finite number; t needs a number"),
    ({"maybe": "x" * 100}, f"o.maybe: '{'x' * 36}... is a str; t needs an int or null"),
    ({"kind": "c"}, "o.kind: 'c' is a str; t needs one of 'a', 'b'"),
    ({"fn": "abs"}, "o.fn: 'abs' is a str; t needs a Python callable or null (set it from "
                    "Python: YAML cannot hold one)"),
    ({"thing": {}}, "o.thing: {} is a dict; t needs a _Thing object or null (set it from "
                    "Python: YAML cannot hold one)"),
    ({"seq": [1, "2"]}, "o.seq: [1, '2'] is a list; t needs a list (each item a number)"),
    ({"nope": 1}, "o.nope: t takes no option 'nope'; its options: bare, flag, fn, free, kind, "
                  "maybe, n, pair, seq, table, thing, x"),
    ({"n": 2, "x": "0.5"}, "o.x: '0.5' is a str; t needs a number"),
    ({"a\nb": 1}, "o.'a\\nb': t takes no option 'a\\nb'; its options: bare, flag, fn, free, "
                  "kind, maybe, n, pair, seq, table, thing, x"),
])
def test_one_line_naming_the_option_and_the_type_it_needs(options: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_options(_target, options, where="o", owner="t")
    assert str(err.value) == message


def test_reserved_options_and_var_keyword() -> None:
    with pytest.raises(ConfigError, match=r"^o\.n: set by elsewhere\.n; remove it from o$"):
        check_options(_target, {"n": 1}, where="o", owner="t", reserved={"n": "elsewhere.n"})

    def open_ended(*, a: int = 0, **rest: Any) -> None:
        pass

    check_options(open_ended, {"a": 1, "anything": "goes"}, where="o", owner="t")
    with pytest.raises(ConfigError, match="o.a: 'x' is a str"):
        check_options(open_ended, {"a": "x"}, where="o", owner="t")


def test_real_optuna_and_ray_signatures_are_read() -> None:
    """Optuna's annotations are strings naming types imported only for type checkers
    (``Callable``, ``FrozenTrial``): each is read, none left unchecked by accident."""
    from ray.tune.schedulers import ASHAScheduler

    tpe, _ = option_types(optuna.samplers.TPESampler)
    assert describe(tpe["n_startup_trials"]) == "an int"
    assert describe(tpe["prior_weight"]) == "a number or null"
    assert describe(tpe["multivariate"]) == "true or false or null"
    assert describe(tpe["gamma"]) == "a Python callable or null"
    nsga, _ = option_types(optuna.samplers.NSGAIISampler)
    assert describe(nsga["population_size"]) == "an int"
    assert describe(nsga["crossover"]) == "a BaseCrossover object or null"
    assert accepts(optuna.samplers.nsgaii.UNDXCrossover(), nsga["crossover"])
    assert not accepts("undx", nsga["crossover"])
    asha, _ = option_types(ASHAScheduler)
    assert describe(asha["grace_period"]) == "an int"
    assert describe(asha["reduction_factor"]) == "a number"
    # what the space's scheduler section admits, Ray's constructor admits
    check_options(ASHAScheduler, {"grace_period": 3, "reduction_factor": 2, "max_t": 1001,
                                  "metric": "test_accuracy", "mode": "max"},
                  where="scheduler", owner="asha")
    for name in SAMPLERS:
        types, var_kw = option_types(sampler_class(name))
        assert not var_kw and "seed" in types
        if name in ("tpe", "nsga2", "gp"):
            assert set(types) - set(SAMPLER_RESERVED), name


# ----------------------------------------------------------------------------- samplers
def _space(tmp_path: Path, **over: Any) -> Any:
    doc = {"name": "opts", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
           "fixed": {"model": {"name": "mlp"}, "data": {"name": "digits"}},
           "params": {"prune.criterion": {"type": "choice", "values": ["magnitude", "random"]}},
           "storage": str(tmp_path / "results"), "wandb": {"mode": "disabled"}, **over}
    return parse_space(doc)


@pytest.mark.parametrize(("sampler", "needles"), [
    ({"name": "tpe", "options": {"n_startup_trials": "ten"}},
     "sampler.options.n_startup_trials: 'ten' is a str; tpe needs an int"),
    ({"name": "nsga2", "options": {"crossover": "undx"}},
     "sampler.options.crossover: 'undx' is a str; nsga2 needs a BaseCrossover object or null"),
    ({"name": "gp", "options": {"deterministic_objective": "yes"}},
     "sampler.options.deterministic_objective: 'yes' is a str; gp needs true or false"),
    ({"name": "random", "options": {"foo": 1}},
     "sampler.options.foo: random takes no option 'foo'; its options: none"),
    ({"name": "tpe", "options": {"seed": 3}}, "sampler.options.seed: set by sampler.seed"),
    ({"name": "grid", "options": {"search_space": {}}},
     "sampler.options.search_space: set by params"),
    ({"name": "nsga2", "options": {"population_size": 1}},  # a value Optuna checks itself
     "sampler.options: nsga2 sampler refused it"),
])
def test_make_sampler_refuses_before_optuna_sees_it(tmp_path: Path, sampler: dict[str, Any],
                                                    needles: str) -> None:
    space = _space(tmp_path, sampler=sampler)
    with pytest.raises(ConfigError) as err:
        space.make_sampler()
    assert needles in str(err.value) and "\n" not in str(err.value)


def test_valid_options_still_build_and_suggest(tmp_path: Path) -> None:
    space = _space(tmp_path, sampler={"name": "tpe", "seed": 0, "options": {
        "n_startup_trials": 3, "prior_weight": 2, "multivariate": True, "consider_prior": None}})
    sampler = space.make_sampler()
    assert isinstance(sampler, optuna.samplers.TPESampler)
    probe_sampler(space, sampler)


def test_the_probe_reports_a_sampler_that_fails_on_its_first_suggestion(tmp_path: Path) -> None:
    """The second line of defence: an option only Optuna's code rejects, at first use."""

    class Faulty(optuna.samplers.RandomSampler):
        def sample_independent(self, *args: Any, **kwargs: Any) -> Any:
            raise TypeError("'<' not supported between instances of 'int' and 'str'")

    space = _space(tmp_path, sampler={"name": "random", "options": {}})
    with pytest.raises(ConfigError) as err:
        probe_sampler(space, Faulty())
    assert str(err.value) == ("sampler: the random sampler failed on a first suggestion "
                              "(TypeError: '<' not supported between instances of 'int' and "
                              "'str')")


# ----------------------------------------------------------------------------- storage URLs
@pytest.mark.parametrize(("storage", "needle"), [
    ("file:///data/results/q?bogus=1", "file:// takes no query string ('?bogus=1' would be "
                                       "ignored); remove it"),
    ("file:///data/results/q#frag", "a URI fragment ('#frag') is not used by any storage"),
    ("s3://bucket/x#frag", "a URI fragment ('#frag') is not used by any storage"),
    ("s3://bucket/x?endpoint_override=h:1#frag", "a URI fragment ('#frag')"),
    ("file:///data/a%20b", "pyarrow reads 'file:///data/a%20b' as '/data/a b'"),
    ("file:///data/a b", "pyarrow cannot read 'file:///data/a b'"),
])
def test_storage_uri_parts_no_storage_uses_are_refused(storage: str, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        check_storage_syntax(storage)
    assert needle in str(err.value)


@pytest.mark.parametrize("storage", [
    "file:///data/results/q", "file:///data/results/q/",
    "s3://bucket/x?endpoint_override=127.0.0.1:9000&scheme=http",  # pyarrow's options
    "results/q?bogus=1",  # a plain path is a directory name, as written
    "results/#1",
])
def test_storage_uri_parts_that_are_used_pass(storage: str) -> None:
    assert check_storage_syntax(storage) == storage


def test_remote_query_keys_pyarrow_does_not_take_are_refused_in_one_line(tmp_path: Path) -> None:
    from sweeps.tune.space import check_storage

    with pytest.raises(ConfigError) as err:
        check_storage("s3://bucket/x?region=us-east-1&bogus=1")
    assert str(err.value).startswith("storage: Unexpected query parameter in S3 URI: 'bogus'; ")


def test_study_url_fragment_and_ignored_query_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"a URL fragment \('#x'\)"):
        check_study_storage(f"sqlite:///{tmp_path}/s.db#x")
    with pytest.raises(ConfigError, match=r"^study\.storage: Query string argument\(s\) 'bogus' "
                                          r"are not accepted by the pysqlite driver"):
        check_study_url(f"sqlite:///{tmp_path}/s.db?bogus=1")
    check_study_url(f"sqlite:///{tmp_path}/s.db?timeout=30")  # a pysqlite argument: used
    assert not (tmp_path / "s.db").exists()  # nothing connected, nothing created
    try:
        import psycopg  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"^study\.storage: postgresql:// needs its "
                                              r"database driver .*psycopg"):
            check_study_url("postgresql://user:secret@db/optuna")


def test_wandb_settings_w_and_b_refuses_fail_now() -> None:
    with pytest.raises(ConfigError, match=r"^wandb\.project: W&B refuses it \(Invalid project "
                                          r"name 'a/b'"):
        check_wandb(WandbSpec(project="a/b"))
    with pytest.raises(ConfigError, match=r"^wandb\.project: .*128"):
        check_wandb(WandbSpec(project="p" * 200))
    check_wandb(WandbSpec(project="a/b", mode="disabled"))  # W&B is never called
    check_wandb(WandbSpec(project="prunetune", entity="team", group="g1"))
