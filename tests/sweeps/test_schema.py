"""One declared schema: rows written by the real recorder (stand-in trials, no Ray run) read
with no option in pandas, polars, DuckDB and pyarrow datasets; stopped trials keep what they
measured; config columns keep their types; version-1 files still read."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from sweeps.results.pareto import Results, load_results
from sweeps.results.schema import HISTORY, LAYER_MAP, SCHEMA_VERSION
from sweeps.results.store import TrialStore
from sweeps.tune.recorder import Recorder
from sweeps.tune.schema_config import space_config_types
from sweeps.tune.space import parse_space

REPO = Path(__file__).resolve().parents[2]
FIXED = {"model": {"name": "mlp"}, "data": {"name": "digits"},
         "train": {"epochs": 3, "optimizer": "sgd", "device": "cpu"},
         "prune": {"sparsity": 0.5}}
SPACE = {
    "name": "schema", "fixed": FIXED,
    "objectives": [{"metric": "test_accuracy", "mode": "max"},
                   {"metric": "sparsity", "mode": "max"}],
    "params": {
        "prune.criterion": {"type": "choice", "values": ["magnitude", "snip", "random"]},
        "train.lr": {"type": "float", "low": 0.01, "high": 0.2, "log": True},
        "prune.steps": {"type": "int", "low": 1, "high": 4},
        # conditional: only drawn for snip, null in the other rows
        "data.train_limit": {"type": "int", "low": 100, "high": 500,
                             "when": {"prune.criterion": "snip"}},
    },
}
LAYERS = ("1.weight", "3.weight", "5.weight")


@dataclass
class StandInTrial:
    """What the recorder reads from a Ray ``Trial``: id, sampled config, last result."""

    trial_id: str
    config: dict[str, Any]
    last_result: dict[str, Any]
    run_metadata: Any = field(default_factory=lambda: SimpleNamespace(num_failures=0))


def epoch(e: int, acc: float, sp: float = 0.5) -> dict[str, Any]:
    return {"epoch": e, "train_loss": 1.0 / e, "train_accuracy": acc - 0.01,
            "test_loss": 1.1 / e, "test_accuracy": acc, "sparsity": sp}


def final_result(acc: float, sp: float, epochs: int = 3) -> dict[str, Any]:
    """A finished trial's final report, as ``sweeps.tune.trainable.final_metrics`` builds it."""
    hist = [epoch(e, acc * e / epochs, sp) for e in range(1, epochs + 1)]
    return {"final": True, "result_status": "ok", "result_error": None, "epoch": epochs,
            "test_accuracy": acc, "test_loss": 0.3, "train_accuracy": acc + 0.02,
            "train_loss": 0.2, "sparsity": sp, "target_sparsity": sp, "params": 1000,
            "params_kept": int(1000 * (1 - sp)), "flops_dense": 2000,
            "flops": int(2000 * (1 - sp)), "train_flops": 10**6, "prune_time_s": 0.01,
            "train_time_s": 0.5, "epochs": epochs, "diverged_epoch": None, "n_collapsed": 0,
            "collapsed_layers": "[]", "similarity_mean": math.nan, "speedup": math.nan,
            "layer_sparsity": json.dumps({n: sp + 0.01 * i for i, n in enumerate(LAYERS)}),
            "similarity": "{}", "history": json.dumps(hist), "time_total_s": 1.0,
            "node_ip": "127.0.0.1", "hostname": "here"}


def sampled(i: int) -> dict[str, Any]:
    crit = ("magnitude", "snip", "random")[i % 3]
    cfg: dict[str, Any] = {"prune": {"criterion": crit, "steps": 1 + i % 4},
                           "train": {"lr": 0.01 + 0.01 * (i % 10)}}
    if crit == "snip":
        cfg["data"] = {"train_limit": 100 + i}
    return cfg


def record_sweep(root: Path, n: int = 9) -> tuple[Recorder, dict[str, float]]:
    """``n`` trials through ``Recorder.record``: ok ones, one stopped early after two epoch
    reports (``on_trial_result``), one error. Returns the recorder and each id's accuracy."""
    space = parse_space({**SPACE, "storage": str(root)})
    rec = Recorder(space.name, TrialStore(str(root)), space.base_config(), space=space)
    accs: dict[str, float] = {}
    for i in range(n):
        tid = f"t{i:04d}"
        trial = StandInTrial(tid, sampled(i), {})
        if i == 1:  # stopped early by the scheduler after 2 epochs
            for e in (1, 2):
                trial.last_result = {**epoch(e, 0.4 + 0.1 * e), "node_ip": "127.0.0.1",
                                     "flops": math.nan,  # a final-only objective: NaN
                                     # the size it trains at (EpochReport.sizes)
                                     "measured_flops": 1000 * e, "measured_target_sparsity": 0.9,
                                     "measured_params_kept": 50}
                rec.on_trial_result(0, [], trial, trial.last_result)
            accs[tid] = 0.6
            rec.record(trial)
        elif i == 2:
            rec.record(trial, error="ValueError: boom")
        else:
            acc = 0.5 + 0.04 * i
            trial.last_result = final_result(acc, 0.3 + 0.05 * i)
            accs[tid] = acc
            rec.record(trial)
    return rec, accs


@pytest.fixture
def sweep(tmp_path: Path) -> tuple[Path, Recorder, dict[str, float]]:
    rec, accs = record_sweep(tmp_path / "res")
    return tmp_path / "res", rec, accs


def test_every_file_has_the_declared_schema_and_metadata(sweep) -> None:
    root, rec, _ = sweep
    files = sorted((root / "trials").glob("*.parquet"))
    assert len(files) == 9
    schemas = [pq.read_schema(f) for f in files]
    assert all(s.equals(schemas[0], check_metadata=True) for s in schemas)
    s = schemas[0]
    assert s.equals(rec.schema) and s.metadata == rec.schema.metadata  # the declared one
    meta = s.metadata
    assert int(meta[b"prunetune.schema_version"]) == SCHEMA_VERSION
    assert json.loads(meta[b"prunetune.objectives"]) == [
        {"metric": "test_accuracy", "mode": "max"}, {"metric": "sparsity", "mode": "max"}]
    assert json.loads(meta[b"prunetune.space"])["params"]["train.lr"]["type"] == "float"
    assert s.field("layer_sparsity").type == LAYER_MAP
    assert s.field("similarity").type == LAYER_MAP
    assert s.field("history").type == HISTORY
    assert s.field("collapsed_layers").type == pa.list_(pa.string())
    # config columns keep their types: choice of strings, float, int, conditional int
    assert s.field("config.prune.criterion").type == pa.string()
    assert s.field("config.train.lr").type == pa.float64()
    assert s.field("config.prune.steps").type == pa.int64()
    assert s.field("config.data.train_limit").type == pa.int64()
    assert s.field("config.prune.criterion_options").type == pa.string()
    assert not [n for n in s.names if n.startswith("layer_sparsity.")]


def _check_frame(df: pd.DataFrame, accs: dict[str, float], n: int = 9) -> None:
    df = df.set_index("trial_id")
    assert len(df) == n and df.index.is_unique
    assert dict(df.loc["t0003", "layer_sparsity"]) == pytest.approx(
        {"1.weight": 0.45, "3.weight": 0.46, "5.weight": 0.47})
    assert len(df.loc["t0003", "history"]) == 3
    assert df.loc["t0004", "config.data.train_limit"] == 104  # snip: drawn
    assert pd.isna(df.loc["t0003", "config.data.train_limit"])  # magnitude: not drawn
    for tid, acc in accs.items():
        assert df.loc[tid, "test_accuracy"] == pytest.approx(acc)


def test_pandas_polars_duckdb_and_pyarrow_read_with_no_option(sweep) -> None:
    root, _, accs = sweep
    trials = root / "trials"
    glob = str(trials / "*.parquet")
    _check_frame(pd.read_parquet(trials), accs)
    _check_frame(pads.dataset(trials).to_table().to_pandas(), accs)
    pol = pl.read_parquet(glob)
    assert pol.height == 9 and pol.width == len(pq.read_schema(next(trials.iterdir())))
    assert pol.schema["history"] == pl.List(pl.Struct({
        "epoch": pl.Int64, "train_loss": pl.Float64, "train_accuracy": pl.Float64,
        "test_loss": pl.Float64, "test_accuracy": pl.Float64, "sparsity": pl.Float64}))
    row = pol.filter(pl.col("trial_id") == "t0005").row(0, named=True)
    assert row["test_accuracy"] == pytest.approx(accs["t0005"])
    assert row["config.prune.criterion"] == "random" and row["config.prune.steps"] == 2
    con = duckdb.connect()
    got = con.execute(
        f"SELECT trial_id, map_extract(layer_sparsity, '3.weight')[1], len(history), "
        f"\"config.train.lr\" FROM read_parquet('{glob}') ORDER BY trial_id").fetchall()
    assert [g[0] for g in got] == [f"t{i:04d}" for i in range(9)]
    assert got[3][1:] == (pytest.approx(0.46), 3, pytest.approx(0.04))


def test_stopped_trials_keep_their_last_epoch_and_history(sweep) -> None:
    root, _, _ = sweep
    df = TrialStore(str(root)).dataframe().set_index("trial_id")
    stopped = df.loc["t0001"]
    assert stopped["status"] == "stopped_early"
    assert stopped["last_epoch"] == 2 and stopped["test_accuracy"] == pytest.approx(0.6)
    assert [h["epoch"] for h in stopped["history"]] == [1, 2]
    assert stopped["history"][1]["test_accuracy"] == pytest.approx(0.6)
    # what it measured before the stop: the size at its last report (not the NaN objective)
    assert stopped["flops"] == 2000 and stopped["target_sparsity"] == 0.9
    assert stopped["params_kept"] == 50
    assert pd.isna(stopped["similarity_mean"])  # never measured: null, not a made-up number
    err = df.loc["t0002"]
    assert err["status"] == "error" and err["error"] == "ValueError: boom"
    assert err["history"] is None or len(err["history"]) == 0


def test_config_types_come_from_the_space() -> None:
    space = parse_space({**SPACE, "fixed": {**FIXED, "train": {"optimizer": "sgd"},
                                            "prune": {}}, "params": {
        **SPACE["params"],
        "prune.sparsity": {"type": "choice", "values": [0.5, 0.9]},  # numbers: double
        "train.epochs": {"type": "choice", "values": [2, 3]},  # ints: int64
    }})
    types = space_config_types(space, space.base_config())
    assert types["config.prune.sparsity"] == pa.float64()
    assert types["config.train.epochs"] == pa.int64()
    assert types["config.prune.criterion"] == pa.string()
    assert types["config.data.train_limit"] == pa.int64()
    assert types["config.data.root"] == pa.string()  # null in every config: text
    assert types["config.train.amp"] == pa.string()


def test_old_results_read_through_the_store_and_results(tmp_path: Path) -> None:
    """A version-1 file (no schema version; per-layer values flattened; history, collapsed
    layers as JSON text; a nullable int stored as text) next to a file of a resumed sweep
    written today: every reader path gives both rows in the current layout."""
    trials = tmp_path / "res" / "trials"
    trials.mkdir(parents=True)
    old = {"sweep": "schema", "trial_id": "old1", "status": "ok", "test_accuracy": 0.81,
           "sparsity": 0.9, "params": 1000, "seed": "3", "history":
           json.dumps([epoch(1, 0.7), epoch(2, 0.81)]), "collapsed_layers": '["5.weight"]',
           "layer_sparsity.1.weight": 0.8, "layer_sparsity.3.weight": 0.95,
           "config.prune.criterion": "snip", "config.prune.criterion_options": 0.5}
    pq.write_table(pa.Table.from_pylist([old]), trials / "old1.parquet")
    assert pq.read_schema(trials / "old1.parquet").metadata in (None, {}) or \
        b"prunetune.schema_version" not in pq.read_schema(trials / "old1.parquet").metadata
    record_sweep_one = Recorder("schema", TrialStore(str(tmp_path / "res")), FIXED)
    record_sweep_one.record(StandInTrial("new1", sampled(0), final_result(0.7, 0.5)))
    store = TrialStore(str(tmp_path / "res"))
    df = store.dataframe().set_index("trial_id")
    assert sorted(df.index) == ["new1", "old1"]
    o = df.loc["old1"]
    assert dict(o["layer_sparsity"]) == {"1.weight": 0.8, "3.weight": 0.95}
    assert o["layer_sparsity.1.weight"] == 0.8 and o["seed"] == 3
    assert [h["epoch"] for h in o["history"]] == [1, 2] and list(o["collapsed_layers"]) == \
        ["5.weight"]
    assert str(o["config.prune.criterion_options"]) == "0.5"  # text in one file, null in one
    assert df.loc["new1", "layer_sparsity.3.weight"] == pytest.approx(0.51)
    res = load_results(tmp_path / "res")  # DuckDB, union by name
    by = res.set_index("trial_id")
    assert by.loc["old1", "layer_sparsity.3.weight"] == 0.95
    assert by.loc["new1", "layer_sparsity.3.weight"] == pytest.approx(0.51)
    assert by.loc["old1", "criterion"] == "snip"
    store.compact()  # old and new merged into one part in the current layout
    files = list(trials.glob("*.parquet"))
    assert len(files) == 1 and files[0].name.startswith("part-")
    pol = pl.read_parquet(str(trials / "*.parquet")).sort("trial_id")
    assert pol["trial_id"].to_list() == ["new1", "old1"]
    assert pol["history"].list.len().to_list() == [3, 2]
    assert sorted(TrialStore(str(tmp_path / "res")).dataframe()["trial_id"]) == ["new1", "old1"]


def _docs_query() -> str:
    text = (REPO / "docs" / "sweeps.md").read_text()
    m = re.search(r'store\.query\("([^"]+)"\)', text)
    assert m, "docs/sweeps.md has no store.query(...) example"
    return m.group(1)


def test_documented_query_runs_and_short_names_match_the_cli(sweep) -> None:
    root, _, _ = sweep
    store = TrialStore(str(root))
    doc = store.query(_docs_query())  # the example in docs/sweeps.md, verbatim
    best = dict(zip(doc.iloc[:, 0], doc.iloc[:, 1], strict=True))
    df = store.dataframe()
    want = df.groupby("config.prune.criterion")["test_accuracy"].max().to_dict()
    assert best == pytest.approx(want)
    sql = ("SELECT criterion, count(*) AS n FROM trials WHERE steps >= 2 AND "
           "\"layer_sparsity.1.weight\" > 0 GROUP BY ALL ORDER BY 1")
    with Results(root) as res:
        cli = res.query(sql)
    assert store.query(sql).equals(cli) and int(cli["n"].sum()) == 4
