"""Hypervolume: hand-computed values, inclusion–exclusion on small sets, history."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeps.results.hypervolume import (
    derive_reference,
    hypervolume,
    hypervolume_history,
    hypervolume_history_values,
)


def inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact HV for minimisation: sum over subsets of ± the volume of their intersection."""
    pts = [p for p in points if (p < ref).all()]
    total = 0.0
    for r in range(1, len(pts) + 1):
        for sub in combinations(pts, r):
            corner = np.max(sub, axis=0)
            total += (-1) ** (r + 1) * float(np.prod(ref - corner))
    return total


def test_two_objectives_by_hand() -> None:
    # max/max, ref (0, 0): rectangles 3x1 + 2x(2-1) + 1x(3-2) = 3 + 2 + 1 = 6
    v = np.array([[3.0, 1.0], [2.0, 2.0], [1.0, 3.0], [1.0, 1.0]])
    assert hypervolume(v, ["max", "max"], [0.0, 0.0]) == pytest.approx(6.0)
    # accuracy max, flops min, ref (0.5, 100): (0.9-0.5)*(100-80) + (0.7-0.5)*(80-20) = 8 + 12
    v = np.array([[0.9, 80.0], [0.7, 20.0], [0.6, 90.0]])
    assert hypervolume(v, ["max", "min"], [0.5, 100.0]) == pytest.approx(20.0)
    # points not beating the reference add nothing; duplicates change nothing
    v = np.array([[3.0, 1.0], [3.0, 1.0], [-1.0, 5.0], [np.nan, 9.0]])
    assert hypervolume(v, ["max", "max"], [0.0, 0.0]) == pytest.approx(3.0)
    assert hypervolume(np.empty((0, 2)), ["max", "max"], [0.0, 0.0]) == 0.0


def test_three_objectives_by_hand() -> None:
    # unit cube corners (2,1,1), (1,2,1), (1,1,2) over ref 0: 1 shared cube + 3 unit slabs = 4
    v = np.array([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 2.0]])
    assert hypervolume(v, ["max"] * 3, [0.0, 0.0, 0.0]) == pytest.approx(4.0)
    # one box, mixed modes: (0.9 - 0.5) * (1 - 0.2) * (10 - 4) = 1.92
    v = np.array([[0.9, 0.2, 4.0]])
    assert hypervolume(v, ["max", "min", "min"], [0.5, 1.0, 10.0]) == pytest.approx(1.92)


coord = st.integers(0, 6).map(float)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 3).flatmap(lambda k: st.lists(
    st.lists(coord, min_size=k, max_size=k), min_size=1, max_size=8)))
def test_matches_inclusion_exclusion(rows: list[list[float]]) -> None:
    pts = np.array(rows)
    k = pts.shape[1]
    ref = np.full(k, 6.5)
    assert hypervolume(pts, ["min"] * k, ref) == pytest.approx(inclusion_exclusion(pts, ref))
    # the same problem as maximisation of the negated values
    assert hypervolume(-pts, ["max"] * k, -ref) == pytest.approx(inclusion_exclusion(pts, ref))


def test_derived_reference_is_worst_value_minus_margin() -> None:
    v = np.array([[0.9, 10.0], [0.5, 30.0], [np.nan, 99.0]])
    ref = derive_reference(v, ["max", "min"])
    np.testing.assert_allclose(ref, [0.5 - 0.004, 30.0 + 0.2])
    np.testing.assert_allclose(derive_reference(np.array([[2.0, 0.0]]), ["max", "max"]),
                               [2.0 - 0.02, -0.01])
    with pytest.raises(ValueError, match="no rows"):
        derive_reference(np.array([[np.nan, 1.0]]), ["max", "max"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(coord, coord, coord), min_size=1, max_size=30), st.integers(2, 3))
def test_history_equals_recomputing_each_prefix(rows: list[tuple], k: int) -> None:
    v = np.array(rows)[:, :k]
    modes = ["max", "min", "max"][:k]
    ref = np.array([-0.5, 6.5, -0.5])[:k]
    eligible = np.arange(len(v)) % 4 != 3
    hv, _ = hypervolume_history_values(v, modes, ref, eligible)
    for i in range(len(v)):
        sel = v[: i + 1][eligible[: i + 1]]
        assert hv[i] == pytest.approx(hypervolume(sel, modes, ref))
    assert (np.diff(hv) >= -1e-12).all()


def test_history_dataframe_orders_by_end_time_and_counts_failed_trials() -> None:
    df = pd.DataFrame({
        "trial_id": ["c", "a", "b", "d"],
        "status": ["ok", "ok", "error", "ok"],
        "end_time": pd.to_datetime(["2026-01-03", "2026-01-01", "2026-01-02", None]),
        "acc": [0.9, 0.5, 0.99, 0.7], "sparsity": [0.5, 0.9, 0.99, 0.95]})
    h = hypervolume_history(df, ["acc:max", "sparsity:max"], [0.0, 0.0])
    assert h["trial_id"].tolist() == ["a", "b", "c", "d"]
    assert h["k"].tolist() == [1, 2, 3, 4]
    # d (0.7, 0.95) dominates a (0.5, 0.9): front {c, d}; b is an error, never counted
    np.testing.assert_allclose(h["hypervolume"], [0.45, 0.45, 0.45 + 0.4 * 0.5,
                                                  0.9 * 0.5 + 0.7 * (0.95 - 0.5)])
    assert h["front_size"].tolist() == [1, 1, 2, 2]
