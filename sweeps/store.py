"""Parquet results: one file per trial, ``<results>/trials/<trial_id>.parquet``.

The driver-side callback (``recorder.py``) is the single writer. Each file is written whole and
then moved into place (temp file + rename on a local disk; a single-object PUT, atomic by itself,
on object stores), so a reader never sees half a file and a rewrite of the same trial (after a
resume) replaces the row instead of duplicating it. Files are readable while the sweep runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pruning_core.record import METRICS

log = logging.getLogger(__name__)

TRIALS_DIR = "trials"
ORPHANS_DIR = "trials_orphaned"
STATUSES = ("ok", "error", "diverged", "stopped_early", "interrupted")

#: columns with a fixed type, so files written by different trials concatenate cleanly
_TYPES: dict[str, pa.DataType] = {
    "sweep": pa.string(),
    "trial_id": pa.string(),
    "status": pa.string(),
    "error": pa.string(),
    "failures": pa.int64(),
    "node_id": pa.string(),
    "node_ip": pa.string(),
    "hostname": pa.string(),
    "start_time": pa.timestamp("ms", tz="UTC"),
    "end_time": pa.timestamp("ms", tz="UTC"),
    "duration_s": pa.float64(),
    "prunetune_version": pa.string(),
    "seed": pa.int64(),
    "last_epoch": pa.int64(),
    # every declared metric (pruning_core/record.py), with its declared type
    **{m.name: getattr(pa, m.type)() for m in METRICS},
    "collapsed_layers": pa.string(),
    "history": pa.string(),
}


def _is_uri(path: str) -> bool:
    return "://" in path


def join_path(root: str, *parts: str) -> str:
    """``root/part/...`` for a local path or a URI, keeping a URI's ``?query`` at the end
    (``s3://b/x?endpoint_override=...`` + ``tune`` -> ``s3://b/x/tune?endpoint_override=...``)."""
    base, sep, query = root.partition("?")
    joined = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return f"{joined}{sep}{query}"


class TrialStore:
    """Read and write the per-trial Parquet files under a results directory or URI."""

    def __init__(self, root: str) -> None:
        if _is_uri(root):
            self.fs, base = pafs.FileSystem.from_uri(root)
            self.local = isinstance(self.fs, pafs.LocalFileSystem)
        else:
            self.fs, base, self.local = pafs.LocalFileSystem(), str(Path(root).resolve()), True
        self.root = root
        self.base = base.rstrip("/")
        self.trials_path = f"{self.base}/{TRIALS_DIR}"

    # ------------------------------------------------------------------ write
    def write(self, row: dict[str, Any]) -> str:
        """Write one trial's row; returns the file path. Same trial id -> same file."""
        table = row_table(row)
        final = f"{self.trials_path}/{row['trial_id']}.parquet"
        self.fs.create_dir(self.trials_path, recursive=True)
        if self.local:
            tmp = f"{self.trials_path}/.{row['trial_id']}.{uuid.uuid4().hex[:8]}.tmp"
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        else:  # object stores: one PUT is atomic; a rename would be copy + delete
            with self.fs.open_output_stream(final) as out:
                pq.write_table(table, out)
        return final

    def move_aside(self, trial_ids: Iterable[str]) -> list[str]:
        """Move rows of trials a resumed experiment no longer knows to ``trials_orphaned/``."""
        moved = []
        for tid in trial_ids:
            src = f"{self.trials_path}/{tid}.parquet"
            dst_dir = f"{self.base}/{ORPHANS_DIR}"
            self.fs.create_dir(dst_dir, recursive=True)
            self.fs.move(src, f"{dst_dir}/{tid}.parquet")
            moved.append(tid)
        return moved

    # ------------------------------------------------------------------ read
    def files(self) -> list[str]:
        sel = pafs.FileSelector(self.trials_path, allow_not_found=True)
        return sorted(
            f.path
            for f in self.fs.get_file_info(sel)
            if f.type == pafs.FileType.File and f.base_name.endswith(".parquet")
            and not f.base_name.startswith(".")
        )

    def trial_ids(self) -> set[str]:
        return {Path(p).stem for p in self.files()}

    def has(self, trial_id: str) -> bool:
        info = self.fs.get_file_info(f"{self.trials_path}/{trial_id}.parquet")
        return info.type == pafs.FileType.File

    def table(self) -> pa.Table:
        """All trial rows as one Arrow table (columns unified across files). An unreadable file
        is skipped with a warning naming it (the policy of every results reader)."""
        table, bad = self.readable_table()
        for path, why in bad:
            log.warning("skipping unreadable results file %s: %s", path, why)
        return table

    def readable_table(self) -> tuple[pa.Table, list[tuple[str, str]]]:
        """The rows of the readable files (as :meth:`table`, logging nothing) and each
        unreadable file with why: (path, first line of the error)."""
        tables, bad = [], []
        for path in self.files():
            try:
                tables.append(pq.read_table(path, filesystem=self.fs))
            except (OSError, pa.ArrowException) as exc:  # corrupt, vanished or being replaced
                bad.append((path, " ".join(str(exc).split())))
        if not tables:
            return pa.table({"trial_id": pa.array([], pa.string())}), bad
        return pa.concat_tables(tables, promote_options="permissive"), bad

    def dataframe(self) -> Any:
        """All trial rows as a pandas DataFrame."""
        return self.table().to_pandas()

    def query(self, sql: str) -> Any:
        """Run one read-only SELECT over the rows, exposed as the table ``trials``; returns a
        DataFrame. The connection reads no file and loads no extension (see SECURITY.md);
        any other statement raises :class:`sweeps.pareto.ResultsError`."""
        import duckdb

        from .pareto import check_select, lock_down

        con = duckdb.connect()
        try:
            con.register("trials", self.table())
            lock_down(con)
            check_select(con, sql)
            return con.execute(sql).fetch_df()
        finally:
            con.close()


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def row_table(row: dict[str, Any]) -> pa.Table:
    """One row -> a one-row table with stable types for the known columns.

    Lists and dicts become JSON strings; a column that is null here and has no known type is
    written as string (so a later file with a value can still be unified by name).
    """
    cols: dict[str, pa.Array] = {}
    for key, value in row.items():
        if isinstance(value, list | dict):
            value = json.dumps(value, default=_jsonable)
        typ = _TYPES.get(key)
        if typ is None:
            if key.startswith(("layer_sparsity.", "similarity.")):
                typ = pa.float64()
            elif value is None:
                typ = pa.string()
        if typ is not None and pa.types.is_integer(typ) and isinstance(value, float):
            value = None if not math.isfinite(value) else int(value)
        try:
            cols[key] = pa.array([value], type=typ)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            cols[key] = pa.array([None if value is None else str(value)], type=pa.string())
    return pa.table(cols)
