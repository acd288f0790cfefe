"""Objectives: what a sweep optimises and a front is taken over.

An *objective* is a numeric results column (a recorded metric) and a mode, ``max`` or
``min``: ``test_accuracy:max``. :class:`Objective` is the one definition, used by the results
readers (``prunetune pareto``/``report``) and by a sweep's space (its ``objectives:`` entries,
``{metric: test_accuracy, mode: max}``, validate into it through pydantic).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sweeps.results.errors import ResultsError

Mode = Literal["max", "min"]
MODES: tuple[str, ...] = ("max", "min")


@dataclass(frozen=True)
class Objective:
    """A results column and whether larger (``max``) or smaller (``min``) is better.

    ``Objective("test_accuracy", "max")``; ``str()`` gives ``"test_accuracy:max"``, the
    command-line form (:func:`parse_objective`). ``metric`` is the same name as ``column``: the
    space file's word for it."""

    column: str
    mode: Mode = "max"

    def __str__(self) -> str:
        return f"{self.column}:{self.mode}"

    @property
    def metric(self) -> str:
        """The column's name as a sweep's space names it (the metric a trial reports)."""
        return self.column

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Objective:
        """``{"metric": "test_accuracy", "mode": "max"}`` (a space file's entry; ``column``
        is accepted for ``metric``) -> Objective; ValueError naming the bad key otherwise."""
        keys = set(data)
        name_keys = keys & {"metric", "column"}
        extra = sorted(keys - {"metric", "column", "mode"})
        if extra:
            raise ValueError(f"unknown key(s) {', '.join(extra)}; an objective has metric "
                             "and mode")
        if len(name_keys) != 1 or "mode" not in keys:
            raise ValueError("an objective needs metric and mode, e.g. "
                             "{metric: test_accuracy, mode: max}")
        name, mode = data[name_keys.pop()], data["mode"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"metric {name!r} must be a column name, e.g. test_accuracy")
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} must be 'max' or 'min'")
        return cls(name, mode)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """Validate from an Objective or a space file's mapping (:meth:`from_mapping`)."""
        from pydantic_core import core_schema

        def validate(value: Any) -> Objective:
            if isinstance(value, Objective):
                return value
            if isinstance(value, Mapping):
                return cls.from_mapping(value)
            raise ValueError("an objective is a mapping {metric: NAME, mode: max|min}")

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(
                lambda o: {"metric": o.column, "mode": o.mode}))


def parse_objective(spec: str | Objective) -> Objective:
    """``"test_accuracy:max"`` -> Objective; the mode is required and must be max or min."""
    if isinstance(spec, Objective):
        return spec
    column, sep, mode = spec.strip().rpartition(":")
    mode = mode.strip().lower()
    if not sep or not column.strip():
        raise ResultsError(f"objective {spec!r}: expected COLUMN:MODE, e.g. test_accuracy:max")
    if mode not in MODES:
        raise ResultsError(f"objective {spec!r}: mode {mode!r} must be 'max' or 'min', "
                           f"e.g. {column.strip()}:max")
    return Objective(column.strip(), mode)  # type: ignore[arg-type]


def parse_objectives(specs: Iterable[str | Objective]) -> list[Objective]:
    objs = [parse_objective(s) for s in specs]
    if not 2 <= len(objs) <= 3:
        raise ResultsError(f"got {len(objs)} objective(s); give 2 or 3, e.g. "
                           "--objective test_accuracy:max --objective sparsity:max")
    cols = [o.column for o in objs]
    if len(set(cols)) != len(cols):
        raise ResultsError(f"objectives repeat a column ({', '.join(cols)}); give distinct ones")
    return objs


def to_max_space(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """(n, k) float array with ``min`` columns negated, so larger is better everywhere."""
    sign = np.array([1.0 if m == "max" else -1.0 for m in modes])
    return np.asarray(values, dtype=np.float64) * sign


def parse_ref(text: str | None, k: int) -> list[float] | None:
    """``"0.0,1.0"`` -> [0.0, 1.0]; ResultsError unless there are exactly k finite numbers."""
    if text is None:
        return None
    try:
        ref = [float(x) for x in text.split(",")]
    except ValueError:
        raise ResultsError(f"--ref {text!r}: expected {k} comma-separated numbers, "
                           "e.g. --ref 0.0,0.0") from None
    if len(ref) != k:
        raise ResultsError(f"--ref {text!r}: {len(ref)} number(s) for {k} objectives; "
                           "give one per objective, in --objective order")
    if not all(math.isfinite(x) for x in ref):
        raise ResultsError(f"--ref {text!r}: every number must be finite (not nan or inf, and "
                           "within float range); give finite values, e.g. --ref 0.0,0.0")
    return ref
