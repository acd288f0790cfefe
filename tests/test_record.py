"""The metric declaration (pruning_core/record.py) is the one list: what a trial reports, the
Parquet columns and the valid objectives all follow it."""

from __future__ import annotations

import dataclasses
import math

import pyarrow as pa
import pytest

from pruning_core.base.record import BY_NAME, EPOCH_METRICS, FINAL_METRICS, METRICS
from pruning_core.trials.experiment import TrialResult
from sweeps.results.schema import COLUMN_TYPES as _TYPES
from sweeps.tune.recorder import _METRIC_KEYS
from sweeps.tune.trainable import final_metrics

_NOT_SCALAR = {"status", "error", "layer_sparsity", "collapsed_layers", "history", "similarity",
               "layer_effective_sparsity", "adversarial", "excluded_layers"}


def _result(**kw: object) -> TrialResult:
    base = dict(status="ok", test_accuracy=0.9, test_loss=0.3, train_accuracy=0.95,
                train_loss=0.2, sparsity=0.5, target_sparsity=0.5, layer_sparsity={"a": 0.5},
                collapsed_layers=[], params=10, params_kept=5, flops_dense=20, flops=10,
                prune_time_s=0.1, train_time_s=1.0, epochs=2,
                history=[{"epoch": 1, "test_accuracy": 0.8}])
    return TrialResult(**{**base, **kw})  # type: ignore[arg-type]


def test_every_trial_result_metric_is_declared_and_reaches_parquet() -> None:
    fields = {f.name for f in dataclasses.fields(TrialResult)} - _NOT_SCALAR
    assert fields <= set(BY_NAME), sorted(fields - set(BY_NAME))
    for name in fields | {"n_collapsed"}:
        assert name in _METRIC_KEYS, name  # the recorder copies it into the row
        assert _TYPES[name] == getattr(pa, BY_NAME[name].type)(), name


def test_final_report_has_every_declared_float_metric_nan_when_unmeasured() -> None:
    final = final_metrics(_result())
    for m in METRICS:
        assert m.name in final, m.name
    assert math.isnan(final["speedup"]) and math.isnan(final["latency_ms"])
    assert final["test_accuracy"] == 0.9 and final["n_collapsed"] == 0


def test_epoch_metrics_are_final_metrics_and_directions_are_valid() -> None:
    assert EPOCH_METRICS < FINAL_METRICS
    assert EPOCH_METRICS == {"train_loss", "train_accuracy", "test_loss", "test_accuracy",
                             "sparsity", "gap_accuracy", "gap_loss", "perplexity"}
    assert all(m.better in ("max", "min", "") for m in METRICS)
    assert len(BY_NAME) == len(METRICS)  # no name declared twice


def test_every_metric_need_is_checked_by_the_space() -> None:
    """A metric that only some configs produce names its need; the space's objective check
    knows every such need (an unknown one crashed validate with a KeyError)."""
    from sweeps.tune.space import _NEEDS

    assert {m.needs for m in METRICS if m.needs} <= set(_NEEDS)


def test_a_trial_records_its_class_count_and_the_chance_rule_reads_it():
    """Issue 17: ``num_classes`` is recorded per trial, so the chance rule is one expression on
    the row instead of a lookup of the dataset's name or options."""
    from pruning_core.trials.experiment import run
    from pruning_core.trials.registries import load_trial_config
    from sweeps.results.flags import chance_threshold, class_count

    cfg = load_trial_config({"model": {"name": "mlp"}, "data": {"name": "digits",
                             "train_limit": 64, "test_limit": 32},
                             "train": {"epochs": 1}, "prune": {"criterion": "magnitude",
                                                               "sparsity": 0.5}})
    result = run(cfg)
    assert result.num_classes == 10 and result.metrics()["num_classes"] == 10
    row = {"num_classes": result.num_classes, "config.data.name": "a_user_factory"}
    assert class_count(row) == (10, "the num_classes column")
    assert chance_threshold(10) == pytest.approx(0.1 + 0.02)
