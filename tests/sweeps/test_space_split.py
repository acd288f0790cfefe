"""The split of ``sweeps/tune/space.py`` (issue 17): a searcher Ray Tune pickled before the split
(its define-by-run function and params named ``sweeps.tune.space.*``) still loads; the sampler
choice is a registry; one resolver tells local results from remote ones; the fixed settings are
validated once into a plan."""

from __future__ import annotations

import pickle

import optuna
import pytest

from pruning_core.base.errors import ConfigError
from pruning_core.base.registry import Registry
from sweeps.tune.location import is_remote, is_uri, local_path, resolve
from sweeps.tune.plan import plan_sweep
from sweeps.tune.samplers import SAMPLERS, sampler_class
from sweeps.tune.space import DefineByRun, parse_space

SPACE = {
    "name": "split", "objectives": [{"metric": "test_accuracy", "mode": "max"}],
    "fixed": {"model": {"name": "mlp"}, "data": {"name": "digits"}, "train": {"epochs": 2}},
    "params": {"prune.sparsity": {"type": "choice", "values": [0.5, 0.9]},
               "train.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
}


def test_a_define_by_run_pickled_under_the_old_names_loads_and_suggests_the_same() -> None:
    fn = parse_space(SPACE).define_by_run()
    data = pickle.dumps(fn, protocol=0)
    old = (data.replace(b"sweeps.tune.define_by_run", b"sweeps.tune.space")
               .replace(b"sweeps.tune.space_params", b"sweeps.tune.space"))
    assert b"sweeps.tune.define_by_run" not in old and b"sweeps.tune.space_params" not in old
    back = pickle.loads(old)
    assert type(back) is DefineByRun and back.order == ["prune.sparsity", "train.lr"]
    drawn = []
    for f in (fn, back):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
        trial = study.ask()
        f(trial)
        drawn.append(trial.params)
    assert drawn[0] == drawn[1] and set(drawn[0]) == {"prune/sparsity", "train/lr"}


def test_samplers_are_a_registry_and_each_builds_its_optuna_class() -> None:
    assert isinstance(SAMPLERS, Registry)
    assert SAMPLERS.names() == ["gp", "grid", "nsga2", "random", "tpe"]
    assert sampler_class("nsga2") is optuna.samplers.NSGAIISampler
    grid = parse_space({**SPACE, "sampler": {"name": "grid"},
                        "params": {"prune.sparsity": SPACE["params"]["prune.sparsity"]}})
    sampler = grid.make_sampler()
    assert isinstance(sampler, optuna.samplers.GridSampler)
    with pytest.raises(ConfigError, match="unknown sampler 'tpee'.*did you mean tpe\\?"):
        sampler_class("tpee")


@pytest.mark.parametrize(("where", "remote", "uri", "local"), [
    ("results/x", False, False, "results/x"),
    ("/abs/x", False, False, "/abs/x"),
    ("file:///data/x", False, True, "/data/x"),
    ("FILE:///data/x", False, True, "/data/x"),  # the scheme read case-insensitively
    ("s3://bucket/x?region=eu", True, True, None),
    ("GS://bucket/x", True, True, None),
])
def test_one_resolver_tells_local_from_remote(where: str, remote: bool, uri: bool,
                                              local: str | None) -> None:
    assert is_remote(where) is remote and resolve(where).remote is remote
    assert is_uri(where) is uri
    if local is None:
        with pytest.raises(ValueError, match="not on the local disk"):
            local_path(where)
    else:
        assert local_path(where) == local


def test_the_plan_validates_the_fixed_settings_once() -> None:
    plan = plan_sweep(parse_space(SPACE), threads=3)
    assert plan.fixed.train.epochs == 2 and plan.fixed.train.threads == 3
    assert plan.base["train"] == {"epochs": 2, "threads": 3}
    cfg = plan.trial_config({"prune": {"sparsity": 0.9}, "train": {"lr": 0.01}})
    assert (cfg.prune.sparsity, cfg.train.lr, cfg.train.threads) == (0.9, 0.01, 3)
    bad = parse_space({**SPACE, "fixed": {**SPACE["fixed"], "train": {"epochs": -1}}})
    with pytest.raises(ConfigError, match=r"^fixed: train\.epochs"):
        plan_sweep(bad)
