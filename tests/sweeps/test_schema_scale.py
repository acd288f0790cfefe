"""Defaults for big sweeps: over 1,000 trials with no sampler named, NSGA-II (flat cost per
trial), with a logged note; a named sampler, or options for the default one, are kept."""

from __future__ import annotations

import logging

import optuna
import pytest

from sweeps.tune.space import LARGE_SWEEP, parse_space

from .test_schema import SPACE


def _space(n: int, **kw: object):
    return parse_space({**SPACE, "budget": {"num_samples": n}, **kw})


def test_large_sweeps_default_to_nsga2_with_a_note(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sweeps.tune.space"):
        sampler = _space(LARGE_SWEEP + 1).make_sampler()
    assert isinstance(sampler, optuna.samplers.NSGAIISampler)
    assert any("sampler: nsga2" in r.getMessage() and "1001 trials" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sweeps.tune.space"):
        assert isinstance(_space(LARGE_SWEEP).make_sampler(), optuna.samplers.TPESampler)
        named = _space(5000, sampler={"name": "tpe", "seed": 1}).make_sampler()
        assert isinstance(named, optuna.samplers.TPESampler)
        tuned = _space(5000, sampler={"options": {"n_startup_trials": 3}}).make_sampler()
        assert isinstance(tuned, optuna.samplers.TPESampler)
    assert not caplog.records  # nothing switched, nothing said
    seeded = _space(5000, sampler={"seed": 7}).make_sampler()  # only a seed: still switched
    assert isinstance(seeded, optuna.samplers.NSGAIISampler)
