"""Compaction: merge a sweep's per-trial files into a few ``part-<uuid>.parquet`` files.

While a sweep runs each finished trial is one atomic file, ``trials/<trial_id>.parquet``;
thousands of small files make every read slow (one footer and one request per file). ``prunetune
compact RESULTS``, and the recorder at the end of every sweep, merge them:

1. list the files (per-trial and earlier parts), remembering each file's size and mtime;
   full parts that no other file shares a trial with are left alone (:func:`settled_parts`);
2. read the rest into one row per trial (the newest, by ``recorded_at``; old schema versions
   read into the current layout);
3. write the rows as new part files, each written whole and moved into place (temp + rename,
   or one PUT on an object store);
4. only then delete the inputs: the parts read, and each per-trial file whose size and
   mtime are still those of step 1 (a trial rewritten meanwhile keeps its newer file).

A kill at any moment leaves every row readable exactly once by the readers here: before step 3
ends nothing changed but a hidden temp file; after it, a trial may be in a new part and in its
old file, and readers keep the newest copy (equal copies are equal rows). Running it again
finishes the job; on a compacted set with nothing new it changes nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sweeps.results.parts import PART_PREFIX, is_part
from sweeps.results.schema import BASE, META_VERSION, schema_version, sweep_schema

if TYPE_CHECKING:
    from sweeps.results.trial_files import TrialFiles

log = logging.getLogger(__name__)

#: rows per part file; several parts let readers split the work and keep rewrites bounded
ROWS_PER_PART = 50_000
#: a hidden temp file of a part older than this was left by a killed compaction
STALE_TEMP_S = 15 * 60


@dataclass
class Compaction:
    """What a compaction did."""

    files_read: int = 0
    rows: int = 0
    parts_written: list[str] = field(default_factory=list)
    files_deleted: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.parts_written or self.files_deleted)


def _output_schema(store: TrialFiles, table: pa.Table, infos: list[pafs.FileInfo]) -> pa.Schema:
    """The sweep's declared schema (metadata of its newest current-version file) with every
    column the rows have."""
    meta: dict[bytes, bytes] = {}
    declared: dict[str, pa.DataType] = {}
    for info in sorted(infos, key=lambda f: f.mtime_ns or 0, reverse=True):
        try:
            schema = pq.read_schema(info.path, filesystem=store.fs)
        except (OSError, pa.ArrowException):
            continue
        if schema_version(schema) >= 2:
            meta = dict(schema.metadata or {})
            declared = {f.name: f.type for f in schema if f.name not in BASE}
            break
    config = {f.name: f.type for f in table.schema if f.name not in BASE}
    for name, typ in declared.items():
        if name in config and (pa.types.is_null(config[name]) or config[name] == typ):
            config[name] = typ
    out = sweep_schema({n: pa.string() if pa.types.is_null(t) else t for n, t in config.items()})
    return out.with_metadata({**meta, META_VERSION: out.metadata[META_VERSION]})


def _already_compact(store: TrialFiles, parts: list[str]) -> bool:
    """No per-trial files, and the parts hold each trial once."""
    seen: set[tuple[object, object]] = set()
    n = 0
    for part in parts:
        try:
            cols = pq.read_table(part, columns=["sweep", "trial_id"], filesystem=store.fs)
        except (OSError, pa.ArrowException, KeyError):
            return False
        seen.update(zip(cols.column(0).to_pylist(), cols.column(1).to_pylist(), strict=True))
        n += cols.num_rows
    return len(seen) == n


def _clean_stale_temps(store: TrialFiles) -> None:
    if not store.local:
        return
    sel = pafs.FileSelector(store.trials_path, allow_not_found=True)
    now = time.time_ns()
    for f in store.fs.get_file_info(sel):
        if f.base_name.startswith(f".{PART_PREFIX}") and f.base_name.endswith(".tmp") \
                and f.mtime_ns is not None and now - f.mtime_ns > STALE_TEMP_S * 1e9:
            store.delete([f.path])


def _part_keys(store: TrialFiles, parts: list[str]) -> dict[str, list[tuple[object, object]]]:
    """``part -> its (sweep, trial_id) keys``, for the parts whose two columns read."""
    out = {}
    for part in parts:
        try:
            cols = pq.read_table(part, columns=["sweep", "trial_id"], filesystem=store.fs)
        except (OSError, pa.ArrowException, KeyError):
            continue  # read (and judged) with the inputs below
        out[part] = list(zip(cols.column(0).to_pylist(), cols.column(1).to_pylist(),
                             strict=True))
    return out


def settled_parts(store: TrialFiles, parts: list[str], singles: list[str],
                  rows_per_part: int) -> list[str]:
    """The part files a compaction can leave as they are: full (``rows_per_part`` rows), and
    holding no trial any other file holds (no newer per-trial row, no copy in another part
    left by a killed compaction). Everything else is read and rewritten."""
    if not parts:
        return []
    keys = _part_keys(store, parts)
    if singles:
        table, _ = store.read_files(singles)
        newer = set(zip(table.column("sweep").to_pylist(),
                        table.column("trial_id").to_pylist(), strict=True)) \
            if table.num_rows else set()
    else:
        newer = set()
    count: dict[tuple[object, object], int] = {}
    for ks in keys.values():
        for k in set(ks):
            count[k] = count.get(k, 0) + 1
    return [p for p, ks in keys.items()
            if len(ks) >= rows_per_part and len(set(ks)) == len(ks)
            and not any(k in newer or count[k] > 1 for k in ks)]


def compact(store: TrialFiles, rows_per_part: int = ROWS_PER_PART) -> Compaction:
    """Merge ``store``'s files into part files (see the module doc); idempotent.

    Incremental: full parts that no newer file supersedes stay as they are, so compacting a
    resumed 100,000-trial sweep rewrites its new rows and at most one partial part, not all."""
    out = Compaction()
    _clean_stale_temps(store)
    infos = store.file_infos()
    parts = [f.path for f in infos if is_part(f.path)]
    singles = [f for f in infos if not is_part(f.path)]
    if not singles and (len(parts) <= 1 or _already_compact(store, parts)):
        return out
    keep = set(settled_parts(store, parts, [f.path for f in singles], rows_per_part))
    inputs = [f for f in infos if f.path not in keep]
    if not singles and sum(is_part(f.path) for f in inputs) <= 1:
        return out  # one partial part and full ones, nothing newer: already compact
    table, bad = store.read_files([f.path for f in inputs])
    out.files_read, out.rows, out.unreadable = len(inputs) - len(bad), table.num_rows, bad
    for path, why in bad:
        log.warning("compaction leaves unreadable results file %s in place: %s", path, why)
    if table.num_rows:
        schema = _output_schema(store, table, infos)
        have = set(table.column_names)
        missing = [f for f in schema if f.name not in have]
        for f in missing:
            table = table.append_column(f, pa.nulls(table.num_rows, f.type))
        table = table.select(schema.names).cast(schema)
        table = table.sort_by([("trial_id", "ascending")])
        for start in range(0, table.num_rows, rows_per_part):
            out.parts_written.append(store.write_part(table.slice(start, rows_per_part)))
    bad_paths = {p for p, _ in bad}
    now = {f.path: (f.size, f.mtime_ns) for f in store.file_infos()}
    done = [f.path for f in inputs if f.path not in bad_paths
            and (is_part(f.path) or now.get(f.path) == (f.size, f.mtime_ns))]
    store.delete(done)
    out.files_deleted = len(done)
    log.info("compacted %d files into %d part file(s): %d rows (%d full parts left as they "
             "were)", out.files_read, len(out.parts_written), out.rows, len(keep))
    return out


def compact_quietly(store: TrialFiles) -> Compaction | None:
    """:func:`compact` for the end of a sweep: a failure is logged, never raised (the rows
    stay readable as they are)."""
    try:
        return compact(store)
    except Exception:  # compaction is an optimisation: the sweep is done
        log.warning("could not compact the results under %s; they stay one file per trial "
                    "(run prunetune compact later)", store.trials_path, exc_info=True)
        return None
