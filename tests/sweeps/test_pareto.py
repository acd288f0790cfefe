"""Pareto fronts against a brute-force O(n²) dominance check; reading and aliases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sweeps.results.pareto import (
    Objective,
    Results,
    ResultsError,
    load_results,
    pareto_front,
    pareto_mask,
    parse_objective,
    parse_objectives,
    query,
    resolve_paths,
    short_aliases,
)


def brute_mask(values: np.ndarray, modes: list[str]) -> np.ndarray:
    """The definition: dominated iff another finite row is >= everywhere and > somewhere."""
    x = np.asarray(values, dtype=float) * np.array([1.0 if m == "max" else -1.0 for m in modes])
    fin = np.isfinite(x).all(axis=1)
    out = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        if not fin[i]:
            continue
        others = x[fin & (np.arange(len(x)) != i)]
        out[i] = not ((others >= x[i]).all(axis=1) & (others > x[i]).any(axis=1)).any()
    return out


cell = st.one_of(st.integers(0, 4).map(float), st.just(float("nan")),
                 st.sampled_from([0.5, -0.0, 0.0, float("inf")]))


@st.composite
def problems(draw: st.DrawFn, k: int) -> tuple[np.ndarray, list[str]]:
    n = draw(st.integers(0, 40))
    rows = draw(st.lists(st.lists(cell, min_size=k, max_size=k), min_size=n, max_size=n))
    if rows and draw(st.booleans()):  # explicit duplicates
        rows += draw(st.lists(st.sampled_from(rows), max_size=5))
    modes = draw(st.lists(st.sampled_from(["max", "min"]), min_size=k, max_size=k))
    return np.array(rows, dtype=float).reshape(-1, k), modes


@settings(max_examples=300, deadline=None)
@given(problems(2))
def test_two_objectives_match_brute_force(p: tuple[np.ndarray, list[str]]) -> None:
    values, modes = p
    np.testing.assert_array_equal(pareto_mask(values, modes), brute_mask(values, modes))


@settings(max_examples=300, deadline=None)
@given(problems(3))
def test_three_objectives_match_brute_force(p: tuple[np.ndarray, list[str]]) -> None:
    values, modes = p
    np.testing.assert_array_equal(pareto_mask(values, modes), brute_mask(values, modes))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("kind", ["continuous", "grid", "anticorrelated"])
def test_large_inputs_use_the_fast_paths_and_stay_exact(k: int, kind: str) -> None:
    # >= 4096 rows: pivot pre-filter + divide and conquer; checked by a vectorised brute force
    rng = np.random.default_rng(k)
    n = 6000
    if kind == "grid":
        v = rng.integers(0, 25, (n, k)).astype(float)
    elif kind == "anticorrelated":
        v = rng.random((n, k))
        v[:, -1] = -v[:, :-1].sum(axis=1) + rng.normal(0, 0.05, n)
    else:
        v = rng.random((n, k))
    v[rng.random(n) < 0.01, 0] = np.nan
    modes = ["max", "min", "max"][:k]
    got = pareto_mask(v, modes)
    x = v * np.array([1.0, -1.0, 1.0][:k])
    fin = np.isfinite(x).all(axis=1)
    want = np.zeros(n, dtype=bool)
    xf = x[fin]
    for i in np.flatnonzero(fin):
        want[i] = not ((xf >= x[i]).all(axis=1) & (xf > x[i]).any(axis=1)).any()
    np.testing.assert_array_equal(got, want)


def test_duplicates_of_front_points_are_all_kept() -> None:
    v = np.array([[1, 1], [1, 1], [0, 2], [0, 0], [0, 2]], dtype=float)
    assert pareto_mask(v, ["max", "max"]).tolist() == [True, True, True, False, True]


def test_pareto_front_sorts_by_first_objective_best_first() -> None:
    df = pd.DataFrame({"trial_id": list("abcde"), "acc": [0.9, 0.5, 0.7, 0.6, np.nan],
                       "flops": [10.0, 1.0, 5.0, 6.0, 0.0]})
    front = pareto_front(df, ["acc:max", "flops:min"])
    assert front["trial_id"].tolist() == ["a", "c", "b"]  # d dominated by c; e has NaN
    front = pareto_front(df, [Objective("flops", "min"), Objective("acc", "max")])
    assert front["trial_id"].tolist() == ["b", "c", "a"]


@pytest.mark.parametrize("spec, msg", [
    ("acc:maxx", "must be 'max' or 'min'"), ("acc", "expected COLUMN:MODE"),
    (":max", "expected COLUMN:MODE")])
def test_bad_objective_syntax(spec: str, msg: str) -> None:
    with pytest.raises(ResultsError, match=msg):
        parse_objective(spec)


def test_objective_count_and_repeats() -> None:
    assert parse_objective("a.b:MIN") == Objective("a.b", "min")
    with pytest.raises(ResultsError, match="give 2 or 3"):
        parse_objectives(["a:max"])
    with pytest.raises(ResultsError, match="give 2 or 3"):
        parse_objectives(["a:max", "b:max", "c:max", "d:max"])
    with pytest.raises(ResultsError, match="distinct"):
        parse_objectives(["a:max", "a:min"])


def test_short_aliases_skip_real_and_ambiguous_names() -> None:
    cols = ["sparsity", "config.prune.criterion", "config.prune.sparsity", "config.model.name",
            "config.criterion"]
    a = short_aliases(cols)
    assert "sparsity" not in a  # the measured column wins
    assert a["model_name"] == "config.model.name" and a["model.name"] == "config.model.name"
    assert "criterion" not in a  # config.prune.criterion and config.criterion both give it
    assert a["prune.criterion"] == "config.prune.criterion"


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_reading_dirs_files_and_several_results(tmp_path: Path) -> None:
    rows = [{"trial_id": f"t{i}", "status": "ok" if i % 3 else "error", "test_accuracy": i / 10,
             "sparsity": 1 - i / 10, "config.prune.criterion": "snip" if i % 2 else "random"}
            for i in range(9)]
    for r in rows[:5]:
        _write(tmp_path / "a" / "trials" / f"{r['trial_id']}.parquet", [r])
    _write(tmp_path / "a" / "trials_orphaned" / "x.parquet", [{**rows[0], "trial_id": "orphan"}])
    _write(tmp_path / "b" / "part.parquet", rows[5:8])
    _write(tmp_path / "c.parquet", [{**rows[8], "extra": 1.0}])  # union_by_name
    assert len(resolve_paths([tmp_path / "a"])) == 1
    df = load_results([tmp_path / "a", tmp_path / "b", tmp_path / "c.parquet"])
    assert sorted(df["trial_id"]) == ["t1", "t2", "t4", "t5", "t7", "t8"]  # ok only
    assert (df["criterion"] == df["config.prune.criterion"]).all()
    everything = load_results(tmp_path / "a", statuses=None, where="criterion = 'snip'")
    assert sorted(everything["trial_id"]) == ["t1", "t3"]
    n = query([tmp_path / "a", tmp_path / "b"], "SELECT count(*) n FROM trials")["n"][0]
    assert n == 8
    with pytest.raises(ResultsError, match="no such file"):
        resolve_paths(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match=r"no \.parquet files"):
        resolve_paths(tmp_path / "empty")


def test_results_front_matches_dataframe_front(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 3000
    tbl = pa.table({"trial_id": [f"t{i}" for i in range(n)],
                    "status": rng.choice(["ok", "ok", "ok", "error", "diverged"], n),
                    "test_accuracy": rng.integers(0, 30, n) / 30,
                    "sparsity": rng.integers(0, 30, n) / 30,
                    "flops": rng.integers(1, 50, n),
                    "config.prune.criterion": rng.choice(["snip", "grasp", None], n)})
    pq.write_table(tbl, tmp_path / "r.parquet")
    df = tbl.to_pandas()
    ok = df[df.status == "ok"]
    objs = ["test_accuracy:max", "sparsity:max", "flops:min"]
    with Results(tmp_path / "r.parquet") as res:
        for o in (objs[:2], objs):
            got = res.front(o)
            assert sorted(got["trial_id"]) == sorted(pareto_front(ok, o)["trial_id"])
            assert "criterion" not in got.columns  # full names only
        few = res.front(objs[:2], columns=["trial_id"])
        assert set(few.columns) == {"trial_id", "test_accuracy", "sparsity"}
        by = res.front(objs[:2], by="criterion", where="flops < 40")
        sub = ok[ok.flops < 40]
        want = sorted(t for _, g in sub.groupby("config.prune.criterion", dropna=False)
                      for t in pareto_front(g, objs[:2])["trial_id"])
        assert sorted(by["trial_id"]) == want
        incl = res.front(objs[:2], statuses=None)
        assert sorted(incl["trial_id"]) == sorted(pareto_front(df, objs[:2])["trial_id"])
        with pytest.raises(ResultsError, match="did you mean test_accuracy"):
            res.front(["test_acuracy:max", "sparsity:max"])
        with pytest.raises(ResultsError, match="SQL error"):
            res.front(objs[:2], where="nonsense ==")
