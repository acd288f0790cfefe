"""Parquet results under ``<results>/trials/``: one file per trial while a sweep runs (or one
part file per batch of rows recorded together, ``write_rows``), merged into ``part-*.parquet``
files by compaction (``sweeps/results/compaction.py``).

The driver-side callback (``recorder.py``) is the single writer of per-trial files. Each file
is written whole and then moved into place (temp file + rename on a local disk; a single-object
PUT, atomic by itself, on object stores), so a reader never sees half a file, and a rewrite of
the same trial (after a resume) replaces the row instead of duplicating it. Every file carries
the sweep's declared schema (``sweeps/results/schema.py``). Files are readable while the sweep runs.

A trial's row can exist twice for a while: in a part file and in its per-trial file (a resumed
trial rewritten after a compaction or a batch), or in two part files (a compaction killed
before it deleted its inputs). Every reader here keeps the newest (``recorded_at``, stamped at each
write), so such a set reads as one row per trial.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweeps.results.parts import PART_PREFIX, is_part
from sweeps.results.schema import BASE, row_table, rows_table, schema_version
from sweeps.results.schema_read import newest_rows, unify, upgrade, with_layer_columns

log = logging.getLogger(__name__)

TRIALS_DIR = "trials"
ORPHANS_DIR = "trials_orphaned"

_READ_THREADS = 8
_CHUNK = 1000  # files read before their rows are packed into one table


def is_uri(path: str) -> bool:
    return "://" in path


def join_path(root: str, *parts: str) -> str:
    """``root/part/...`` for a local path or a URI, keeping a URI's ``?query`` at the end
    (``s3://b/x?endpoint_override=...`` + ``tune`` -> ``s3://b/x/tune?endpoint_override=...``)."""
    base, sep, query = root.partition("?")
    joined = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return f"{joined}{sep}{query}"


class TrialFiles:
    """Read and write the trial rows (Parquet) under a results directory or URI: the files
    themselves. :class:`sweeps.results.store.TrialStore` adds the query and compaction on top."""

    def __init__(self, root: str) -> None:
        if is_uri(root):
            self.fs, base = pafs.FileSystem.from_uri(root)
            self.local = isinstance(self.fs, pafs.LocalFileSystem)
        else:
            self.fs, base, self.local = pafs.LocalFileSystem(), str(Path(root).resolve()), True
        self.root = root
        self.base = base.rstrip("/")
        self.trials_path = f"{self.base}/{TRIALS_DIR}"

    # ------------------------------------------------------------------ write
    def write(self, row: Mapping[str, Any], schema: pa.Schema | None = None,
              sync_later: bool = False) -> str:
        """Write one trial's row with ``schema`` (the sweep's; default: inferred from the row);
        returns the file path. Same trial id -> same file. ``sync_later``: the ``fsync`` is
        left to ``syncer.later`` (the sweep's recorder: off the driver's event loop)."""
        row = {**row, "recorded_at": dt.datetime.now(dt.UTC)}
        # one row: compression and statistics buy nothing and cost every reader time
        return self._put(row_table(row, schema), f"{row['trial_id']}.parquet",
                         compression="none", write_statistics=False, sync_later=sync_later)

    def write_rows(self, rows: Sequence[Mapping[str, Any]], schema: pa.Schema,
                   sync_later: bool = False) -> str | None:
        """Write rows recorded together: one row as :meth:`write` (its per-trial file), several
        as one new part file (one Parquet write for them all; a trial given twice keeps its
        later row). Readers see them as they see compacted rows; compaction merges the part
        later. Returns the file path (None for no rows)."""
        if len(rows) <= 1:
            return self.write(rows[0], schema, sync_later=sync_later) if rows else None
        now = dt.datetime.now(dt.UTC)
        latest = {r["trial_id"]: {**r, "recorded_at": now} for r in rows}
        # a few rows, merged by compaction later: no compression or statistics, as one row
        return self.write_part(rows_table(list(latest.values()), schema),
                               sync_later=sync_later, compression="none",
                               write_statistics=False)

    def write_part(self, table: pa.Table, sync_later: bool = False, **kw: Any) -> str:
        """Write many rows as one new ``part-<uuid>.parquet`` (atomically); returns its path.
        ``kw``: Parquet writer options (default: row groups of 16,384 rows)."""
        return self._put(table, f"{PART_PREFIX}{uuid.uuid4().hex}.parquet",
                         sync_later=sync_later, **({"row_group_size": 16_384} | kw))

    def _put(self, table: pa.Table, name: str, sync_later: bool = False, **kw: Any) -> str:
        final = f"{self.trials_path}/{name}"
        self.fs.create_dir(self.trials_path, recursive=True)
        if self.local:
            tmp = f"{self.trials_path}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
            with open(tmp, "wb") as out:
                pq.write_table(table, out, **kw)
                out.flush()
                if not sync_later:
                    os.fsync(out.fileno())
            os.replace(tmp, final)
            if sync_later:
                from .syncer import later

                later(final)
        else:  # object stores: one PUT is atomic; a rename would be copy + delete
            with self.fs.open_output_stream(final) as out:
                pq.write_table(table, out, **kw)
        return final

    def delete(self, paths: Iterable[str]) -> None:
        for p in paths:
            try:
                self.fs.delete_file(p)
            except FileNotFoundError:
                pass

    def move_aside(self, trial_ids: Iterable[str]) -> list[str]:
        """Move rows of trials a resumed experiment no longer knows to ``trials_orphaned/``
        (from their per-trial files or out of part files); returns the ids moved."""
        wanted = set(trial_ids)
        dst_dir = f"{self.base}/{ORPHANS_DIR}"
        moved: set[str] = set()
        for tid in sorted(wanted):
            src = f"{self.trials_path}/{tid}.parquet"
            if self.fs.get_file_info(src).type == pafs.FileType.File:
                self.fs.create_dir(dst_dir, recursive=True)
                self.fs.move(src, f"{dst_dir}/{tid}.parquet")
                moved.add(tid)
        for part in self.part_files():
            table = self._read(part)
            hit = pc.is_in(table.column("trial_id"), pa.array(sorted(wanted), pa.string()))
            hit = hit.fill_null(False)
            if not pc.any(hit).as_py():
                continue
            self.fs.create_dir(dst_dir, recursive=True)
            for row in table.filter(hit).to_pylist():  # orphans first: nothing is lost
                dst = f"{dst_dir}/{row['trial_id']}.parquet"
                if row["trial_id"] not in moved and \
                        self.fs.get_file_info(dst).type != pafs.FileType.File:
                    with self.fs.open_output_stream(dst) as out:
                        pq.write_table(table.filter(pc.equal(table.column("trial_id"),
                                                             row["trial_id"])), out)
                moved.add(row["trial_id"])
            rest = table.filter(pc.invert(hit))
            if rest.num_rows:
                self.write_part(rest)
            self.delete([part])
        return sorted(moved)

    # ------------------------------------------------------------------ read
    def file_infos(self) -> list[pafs.FileInfo]:
        sel = pafs.FileSelector(self.trials_path, allow_not_found=True)
        return sorted((f for f in self.fs.get_file_info(sel)
                       if f.type == pafs.FileType.File and f.base_name.endswith(".parquet")
                       and not f.base_name.startswith(".")), key=lambda f: f.path)

    def files(self) -> list[str]:
        """Every results file: per-trial files and compacted part files."""
        return [f.path for f in self.file_infos()]

    def part_files(self) -> list[str]:
        return [p for p in self.files() if is_part(p)]

    def trial_ids(self) -> set[str]:
        ids = {Path(p).stem for p in self.files() if not is_part(p)}
        for part in self.part_files():
            try:
                col = pq.read_table(part, columns=["trial_id"], filesystem=self.fs)
            except (OSError, pa.ArrowException) as exc:
                log.warning("skipping unreadable results file %s: %s", part, exc)
                continue
            ids.update(i for i in col.column(0).to_pylist() if i is not None)
        return ids

    def has(self, trial_id: str) -> bool:
        info = self.fs.get_file_info(f"{self.trials_path}/{trial_id}.parquet")
        if info.type == pafs.FileType.File:
            return True
        return any(trial_id in self._part_ids(p) for p in self.part_files())

    def _part_ids(self, part: str) -> set[str]:
        try:
            col = pq.read_table(part, columns=["trial_id"], filesystem=self.fs)
        except (OSError, pa.ArrowException):
            return set()
        return set(col.column(0).to_pylist())

    def row(self, trial_id: str) -> dict[str, Any] | None:
        """The newest row of one trial (per-layer maps also as columns), or None."""
        path = f"{self.trials_path}/{trial_id}.parquet"
        paths = [path] if self.fs.get_file_info(path).type == pafs.FileType.File else []
        paths += [p for p in self.part_files() if trial_id in self._part_ids(p)]
        table, _ = self.read_files(paths)
        if "trial_id" not in table.column_names:
            return None
        table = table.filter(pc.equal(table.column("trial_id"), trial_id))
        rows = with_layer_columns(table).to_pylist()
        return rows[0] if rows else None

    def _read(self, path: str) -> pa.Table:
        with self.fs.open_input_file(path) as f:  # ~3x faster than read_table on tiny files
            pf = pq.ParquetFile(f, pre_buffer=True)
            table = pf.read(use_threads=pf.metadata.num_rows > 10_000)
        names = set(table.column_names)  # a property: a new list of every column per access
        if schema_version(table.schema) < 2 or any(n not in names for n in BASE):
            table = upgrade(table)
        return table

    def read_files(self, paths: list[str]) -> tuple[pa.Table, list[tuple[str, str]]]:
        """Rows of ``paths`` as stored (upgraded to the current layout, one row per trial:
        the newest) and each unreadable file with why: (path, first line of the error)."""
        def one(path: str) -> tuple[str, pa.Table | None, str]:
            try:
                return path, self._read(path), ""
            except (OSError, pa.ArrowException) as exc:  # corrupt, vanished, being replaced
                return path, None, " ".join(str(exc).split())

        tables: list[pa.Table] = []
        bad: list[tuple[str, str]] = []
        workers = max(1, min(_READ_THREADS, len(paths)))
        with ThreadPoolExecutor(workers) as pool:
            # in chunks, each made one contiguous table: thousands of one-row tables would
            # hold a few hundred kB each
            for start in range(0, len(paths), _CHUNK):
                results = list(pool.map(one, paths[start:start + _CHUNK]))
                bad += [(p, why) for p, t, why in results if t is None]
                chunk = unify([t for _, t, _ in results if t is not None])
                tables.append(chunk.combine_chunks() if len(results) > 1 else chunk)
        return newest_rows(unify(tables)), bad

    def readable_table(self) -> tuple[pa.Table, list[tuple[str, str]]]:
        """The rows of the readable files, one per trial (as :meth:`table`, logging nothing),
        and each unreadable file with why: (path, first line of the error)."""
        table, bad = self.read_files(self.files())
        return with_layer_columns(table), bad

    def table(self) -> pa.Table:
        """All trial rows as one Arrow table: one row per trial (the newest), every schema
        version read into the current layout, per-layer maps also as ``layer_sparsity.<layer>``
        columns. An unreadable file is skipped with a warning naming it (the policy of every
        results reader)."""
        table, bad = self.readable_table()
        for path, why in bad:
            log.warning("skipping unreadable results file %s: %s", path, why)
        return table

    def dataframe(self) -> Any:
        """All trial rows as a pandas DataFrame."""
        return self.table().to_pandas()
