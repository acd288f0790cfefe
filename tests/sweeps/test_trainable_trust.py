"""The driver's import allowances travel with the trainable (``TrialSettings.trust``): a worker of
a Ray the caller started before ``run_sweep`` (whose runtime_env is the caller's) still applies
them before it reads a config, joined with the worker's own; nothing else is added."""

from __future__ import annotations

import os

import pytest

from pruning_core.base.code_trust import ALLOW_ENV, ROOTS_ENV
from sweeps.tune.trainable import TrialSettings

BASE = {"model": {"name": "mlp"}, "data": {"name": "digits"}}


def test_allowances_are_joined_into_the_workers_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_ENV, "mine")
    monkeypatch.delenv(ROOTS_ENV, raising=False)
    s = TrialSettings(BASE, "sw", trust=((ALLOW_ENV, "theirs,mine"), (ROOTS_ENV, "/code")))
    cfg, data = s.trial_config({}, "t1")
    assert os.environ[ALLOW_ENV] == "mine,theirs" and os.environ[ROOTS_ENV] == "/code"
    assert data["tags"] == {"sweep": "sw", "trial_id": "t1"} and cfg.model.name == "mlp"
    s.trial_config({}, "t2")  # again: nothing doubled
    assert os.environ[ALLOW_ENV] == "mine,theirs"


def test_no_allowances_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    TrialSettings(BASE, "sw").trial_config({}, "t")
    assert ALLOW_ENV not in os.environ
