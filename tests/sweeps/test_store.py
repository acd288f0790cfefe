"""Parquet store: atomic per-trial files, idempotent rewrites, unified reads, DuckDB queries,
values that fit no column kept, unreadable files left alone by compaction."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sweeps.results.store import TrialStore


def _row(tid: str, status: str = "ok", acc: float | None = 0.9, **kw: object) -> dict:
    now = dt.datetime.now(dt.UTC)
    return {"sweep": "s", "trial_id": tid, "status": status, "error": None, "start_time": now,
            "end_time": now, "test_accuracy": acc, "sparsity": 0.5, "params": 10,
            "config.prune.criterion": "snip", **kw}


def test_one_file_per_trial_rewrite_replaces(tmp_path: Path) -> None:
    store = TrialStore(str(tmp_path))
    store.write(_row("a"))
    store.write(_row("b", status="error", acc=None, error="ValueError: boom"))
    store.write(_row("a", acc=0.95))  # the same trial again (e.g. after a resume)
    files = sorted(p.name for p in (tmp_path / "trials").iterdir())
    assert files == ["a.parquet", "b.parquet"]  # no temp files left, no duplicate
    df = store.dataframe().set_index("trial_id")
    assert df.loc["a", "test_accuracy"] == 0.95
    assert df.loc["b", "status"] == "error" and df.loc["b", "error"] == "ValueError: boom"
    assert math.isnan(df.loc["b", "test_accuracy"])


def test_columns_unify_across_files(tmp_path: Path) -> None:
    store = TrialStore(str(tmp_path))
    store.write(_row("a", **{"config.search.x": 0.3, "layer_sparsity.fc.weight": 0.7,
                            "collapsed_layers": ["fc.weight"]}))
    store.write(_row("b", **{"config.prune.steps": 3, "params": 12.0}))
    table = store.table()
    assert table.num_rows == 2
    assert table.schema.field("params").type == "int64"
    df = store.dataframe().set_index("trial_id")
    assert list(df.loc["a", "collapsed_layers"]) == ["fc.weight"]  # list<string>, not JSON
    assert dict(df.loc["a", "layer_sparsity"]) == {"fc.weight": 0.7}  # folded into the map
    assert df.loc["a", "layer_sparsity.fc.weight"] == 0.7  # and offered as a column
    assert math.isnan(df.loc["b", "layer_sparsity.fc.weight"])
    assert df.loc["b", "config.prune.steps"] == 3
    assert pq.read_table(tmp_path / "trials" / "a.parquet").num_rows == 1


def test_duckdb_query_and_move_aside(tmp_path: Path) -> None:
    store = TrialStore(str(tmp_path))
    for i, status in enumerate(["ok", "ok", "diverged", "stopped_early"]):
        store.write(_row(f"t{i}", status=status, acc=0.5 + i / 10))
    out = store.query("select status, count(*) n from trials group by status order by status")
    assert dict(zip(out["status"], out["n"], strict=True)) == {
        "diverged": 1, "ok": 2, "stopped_early": 1}
    store.move_aside(["t3"])
    assert store.trial_ids() == {"t0", "t1", "t2"}
    assert (tmp_path / "trials_orphaned" / "t3.parquet").exists()



def test_unknown_rows_kept_up_to_the_budget(tmp_path: Path) -> None:
    """After a resume, rows of trials the experiment does not know are kept while the budget has
    room (the searcher counted them, so nothing re-samples them) and moved aside beyond it."""
    from sweeps.tune.recorder import Recorder

    store = TrialStore(str(tmp_path))
    for tid in ("a", "b", "c", "x", "y"):
        store.write(_row(tid))
    rec = Recorder("s", store, {}, num_samples=4)
    rec._settle_unknown_rows({"a", "b", "c"})  # room for one of x, y
    assert store.trial_ids() == {"a", "b", "c", "x"}
    assert {p.stem for p in (tmp_path / "trials_orphaned").glob("*.parquet")} == {"y"}
    rec._settle_unknown_rows({"a", "b", "c", "z"})  # a later resume re-sampled it: no room
    assert store.trial_ids() == {"a", "b", "c"}
    assert {p.stem for p in (tmp_path / "trials_orphaned").glob("*.parquet")} == {"x", "y"}


def test_a_value_that_does_not_fit_its_column_is_kept_in_extra(tmp_path: Path) -> None:
    from sweeps.results.schema import sweep_schema

    schema = sweep_schema({"config.prune.steps": pa.int64()})
    store = TrialStore(str(tmp_path))
    store.write(_row("a", **{"config.prune.steps": "three", "config.new.key": 1.5,
                            "params": "n/a"}), schema)
    file = pq.read_table(tmp_path / "trials" / "a.parquet")
    assert file.schema.names == schema.names  # exactly the declared columns, no more
    row = store.dataframe().iloc[0]
    assert pd.isna(row["config.prune.steps"]) and pd.isna(row["params"])
    assert json.loads(row["extra"]) == {"config.new.key": 1.5, "config.prune.steps": "three",
                                        "params": "n/a", "config.prune.criterion": "snip"}


def test_compaction_leaves_an_unreadable_file_in_place(tmp_path: Path) -> None:
    store = TrialStore(str(tmp_path))
    for tid in ("a", "b", "c"):
        store.write(_row(tid))
    (tmp_path / "trials" / "bad.parquet").write_bytes(b"not parquet at all")
    done = store.compact()
    assert [p for p, _ in done.unreadable] == [str(tmp_path / "trials" / "bad.parquet")]
    names = sorted(p.name for p in (tmp_path / "trials").iterdir())
    assert names[0] == "bad.parquet" and names[1].startswith("part-") and len(names) == 2
    assert sorted(store.dataframe()["trial_id"]) == ["a", "b", "c"]
