"""Rows of a pack's members (``budget.pack``) through the real recorder: the same declared
schema, file for file, as the unpacked rows of ``test_schema.py`` (same space), readable with
no option by pandas, polars and DuckDB; a member's row holds its own config and result; the
members a failed pack had not finished get ``error`` rows, a finished member keeps ``ok``."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

from sweeps.results.store import TrialStore
from sweeps.tune.pack import PACK_KEY, PACK_MEMBER
from sweeps.tune.recorder import Recorder
from sweeps.tune.space import parse_space

from .test_schema import SPACE, StandInTrial, epoch, final_result, record_sweep, sampled


def record_packed(root: Path) -> dict[str, float]:
    """Three packs of three members (configs ``sampled(0..8)``); pack p2 fails after its
    member 0 finished and member 1 reported one epoch. Returns each member id's accuracy."""
    space = parse_space({**SPACE, "storage": str(root)})
    rec = Recorder(space.name, TrialStore(str(root)), space.base_config(), space=space)
    accs: dict[str, float] = {}
    for p in range(3):
        trial = StandInTrial(f"p{p}", {PACK_KEY: [sampled(3 * p + i) for i in range(3)]}, {})
        rec.on_trial_start(0, [], trial)
        for i in range(3):
            if p == 2 and i == 2:
                break
            rec.on_trial_result(0, [], trial, {**epoch(1, 0.4), PACK_MEMBER: i})
            if p == 2 and i == 1:
                continue
            acc = 0.5 + 0.04 * (3 * p + i)
            trial.last_result = {**final_result(acc, 0.3 + 0.05 * (3 * p + i)), PACK_MEMBER: i}
            rec.on_trial_result(0, [], trial, trial.last_result)
            accs[f"p{p}-m{i}"] = acc
        if p == 2:
            rec.on_trial_error(0, [], trial)
        else:
            rec.on_trial_complete(0, [], trial)
    return accs


def test_member_rows_have_the_unpacked_schema_and_their_own_values(tmp_path: Path) -> None:
    record_sweep(tmp_path / "solo")
    accs = record_packed(tmp_path / "packed")
    unpacked = pq.read_schema(next((tmp_path / "solo" / "trials").glob("*.parquet")))
    files = sorted((tmp_path / "packed" / "trials").glob("*.parquet"))
    assert len(files) == 9
    for f in files:  # the metadata's space text differs only by its storage path
        got = pq.read_schema(f)
        assert got.remove_metadata().equals(unpacked.remove_metadata())
        assert {k: v for k, v in got.metadata.items() if k != b"prunetune.space"} == {
            k: v for k, v in unpacked.metadata.items() if k != b"prunetune.space"}
    df = pd.read_parquet(tmp_path / "packed" / "trials").set_index("trial_id")
    assert sorted(df.index) == [f"p{p}-m{i}" for p in range(3) for i in range(3)]
    for tid, acc in accs.items():
        assert df.loc[tid, "status"] == "ok" and df.loc[tid, "test_accuracy"] == pytest.approx(acc)
    # each member's own sampled config: p1-m1 is sampled(4) (snip, steps 1, lr 0.05, limit 104)
    assert df.loc["p1-m1", "config.prune.criterion"] == "snip"
    assert df.loc["p1-m1", "config.data.train_limit"] == 104
    assert df.loc["p1-m1", "config.train.lr"] == pytest.approx(0.05)
    assert pd.isna(df.loc["p1-m0", "config.data.train_limit"])  # magnitude: not drawn
    # the failed pack: its finished member stays ok, the others are error rows
    assert df.loc["p2-m0", "status"] == "ok"
    assert df.loc["p2-m1", "status"] == "error" and df.loc["p2-m2", "status"] == "error"
    assert [h["epoch"] for h in df.loc["p2-m1", "history"]] == [1]  # what it had reported
    glob = str(tmp_path / "packed" / "trials" / "*.parquet")
    assert pl.read_parquet(glob).height == 9
    got = duckdb.connect().execute(
        f"SELECT trial_id, len(history) FROM read_parquet('{glob}') WHERE status = 'ok' "
        "ORDER BY trial_id").fetchall()
    assert got == [(t, 3) for t in sorted(accs)]
