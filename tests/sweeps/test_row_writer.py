"""The recorder's batched row writes (``sweeps/tune/row_writer.py``,
``TrialFiles.write_rows``, ``schema.rows_table``): what is written when, in which files, and
what readers make of it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sweeps.results.schema import row_table, rows_table
from sweeps.results.store import TrialStore
from sweeps.tune.launch import LiveCallbacks
from sweeps.tune.recorder import Recorder
from sweeps.tune.row_writer import RowWriter
from sweeps.tune.space import parse_space

from .test_schema import SPACE, StandInTrial, final_result, sampled


class Calls:
    """A ``write`` that keeps each batch it was given (and when)."""

    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.at: list[float] = []
        self.fail_first = fail_first
        self.lock = threading.Lock()

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        with self.lock:
            self.at.append(time.monotonic())
            self.batches.append(list(rows))
            if self.fail_first and len(self.batches) == 1:
                raise OSError("disk full")

    def ids(self) -> list[list[int]]:
        with self.lock:
            return [[r["i"] for r in b] for b in self.batches]


def _wait_for(cond: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_rows_put_together_go_out_in_one_write_in_order() -> None:
    calls = Calls()
    w = RowWriter(calls, flush_s=30.0)
    for i in range(5):
        w.put({"i": i})
    assert calls.ids() == []  # nothing is due yet: 30 s to go, 5 rows of 1000
    w.flush()
    assert calls.ids() == [[0, 1, 2, 3, 4]]
    w.flush()  # nothing new: no empty write
    assert calls.ids() == [[0, 1, 2, 3, 4]]
    w.close()


def test_a_lone_row_goes_out_after_flush_s_without_being_asked() -> None:
    calls = Calls()
    w = RowWriter(calls, flush_s=0.2)
    t0 = time.monotonic()
    w.put({"i": 7})
    _wait_for(lambda: calls.ids() == [[7]])
    assert calls.at[0] - t0 >= 0.19  # it waited for company first
    w.close()


def test_max_rows_go_out_at_once() -> None:
    calls = Calls()
    w = RowWriter(calls, flush_s=60.0, max_rows=3)
    for i in range(3):
        w.put({"i": i})
    _wait_for(lambda: calls.ids() == [[0, 1, 2]])
    w.put({"i": 3})
    time.sleep(0.1)
    assert calls.ids() == [[0, 1, 2]]  # one row of three: it waits
    w.close()  # close writes what is queued
    assert calls.ids() == [[0, 1, 2], [3]]
    with pytest.raises(RuntimeError, match="after close"):
        w.put({"i": 4})


def test_a_failed_write_is_logged_and_later_rows_still_go_out(
        caplog: pytest.LogCaptureFixture) -> None:
    calls = Calls(fail_first=True)
    w = RowWriter(calls, flush_s=30.0)
    w.put({"i": 0})
    w.flush()
    w.put({"i": 1})
    w.flush()
    assert calls.ids() == [[0], [1]]
    assert "could not write 1 results rows" in caplog.text
    w.close()


def _rows(n: int, acc: float = 0.5) -> list[dict[str, Any]]:
    return [{"sweep": "s", "trial_id": f"t{i}", "status": "ok", "test_accuracy": acc + i / 100,
             "layer_sparsity": {"a": 0.1 * i}, "unknown_key": i} for i in range(n)]


def test_rows_table_is_row_table_of_each_row() -> None:
    rows = _rows(3)
    schema = row_table({k: v for k, v in rows[0].items() if k != "unknown_key"}).schema
    many = rows_table(rows, schema)
    one_by_one = pa.concat_tables([row_table(r, schema) for r in rows])
    assert many.equals(one_by_one)
    assert many.column("test_accuracy").to_pylist() == [0.5, 0.51, 0.52]
    assert many.column("extra").to_pylist() == ['{"unknown_key": 0}', '{"unknown_key": 1}',
                                                '{"unknown_key": 2}']


def test_write_rows_one_file_per_lone_row_one_part_per_batch(tmp_path: Path) -> None:
    store = TrialStore(str(tmp_path))
    schema = row_table(_rows(1)[0]).schema
    assert store.write_rows([], schema) is None
    lone = store.write_rows(_rows(1), schema)
    assert lone is not None and Path(lone).name == "t0.parquet"
    # a batch: one part file; t1 given twice keeps its later row
    batch = [*_rows(3, acc=0.6)[1:], {**_rows(2)[1], "test_accuracy": 0.99}]
    part = store.write_rows(batch, schema)
    assert part is not None and Path(part).name.startswith("part-")
    assert pq.read_table(part).num_rows == 2
    table = store.table()
    got = dict(zip(table.column("trial_id").to_pylist(),
                   table.column("test_accuracy").to_pylist(), strict=True))
    assert got == {"t0": 0.5, "t1": 0.99, "t2": 0.62}
    # a later rewrite of a batched trial (a resumed run) is the row readers keep
    store.write({**_rows(3)[2], "test_accuracy": 0.11}, schema)
    table = store.table()
    got = dict(zip(table.column("trial_id").to_pylist(),
                   table.column("test_accuracy").to_pylist(), strict=True))
    assert got == {"t0": 0.5, "t1": 0.99, "t2": 0.11}
    assert store.trial_ids() == {"t0", "t1", "t2"}
    assert store.has("t1") and store.row("t2")["test_accuracy"] == 0.11  # type: ignore[index]


def test_a_snapshot_writes_the_recorders_queued_rows(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Tune's experiment snapshot calls ``get_state`` (through ``LiveCallbacks``): every row
    recorded before it is on disk when it returns, batched into one part file."""
    monkeypatch.setattr("sweeps.tune.row_writer.FLUSH_S", 30.0)
    space = parse_space({**SPACE, "storage": str(tmp_path)})
    store = TrialStore(str(tmp_path))
    rec = Recorder(space.name, store, space.base_config(), space=space, background=True)
    for i in range(4):
        rec.record(StandInTrial(f"t{i:04d}", sampled(i), final_result(0.5 + i / 10, 0.5)))
    assert store.files() == []  # queued: 30 s to go
    with LiveCallbacks.serving([rec]):
        assert LiveCallbacks().get_state() is None
    files = store.files()
    assert len(files) == 1 and Path(files[0]).name.startswith("part-")
    table = store.table()
    assert sorted(table.column("trial_id").to_pylist()) == [f"t{i:04d}" for i in range(4)]
    assert sorted(table.column("test_accuracy").to_pylist()) == [0.5, 0.6, 0.7, 0.8]
    rec.record(StandInTrial("t0009", sampled(9), final_result(0.9, 0.5)))
    rec.drain()  # the end of a sweep: the rest, now
    assert len(store.files()) == 2 and store.has("t0009")
