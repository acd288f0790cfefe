"""Reading rows of any schema version into the declared layout (``sweeps/results/schema.py``).

* :func:`upgrade`: one file's table (or several, already concatenated) -> the base columns
  with their declared types. Version-1 files (no ``prunetune.schema_version``) have per-layer
  values in ``layer_sparsity.<layer>`` / ``similarity.<layer>`` columns (folded into the maps
  here), ``history`` and ``collapsed_layers`` as JSON text, and some columns typed by their
  value (a nullable int stored as text).
* :func:`unify`: tables whose ``config.*`` columns differ -> one table (a column typed
  differently in two tables becomes the common type, text as the last resort).
* :func:`newest_rows`: one row per trial, the newest (``recorded_at``).
* :func:`with_layer_columns`: the maps also as one ``layer_sparsity.<layer>`` column per layer,
  the shape older readers and SQL filters use.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sweeps.results.schema import BASE, PER_LAYER, _convert, common_type

log = logging.getLogger(__name__)


def _flattened(table: pa.Table, group: str) -> list[str]:
    prefix = f"{group}."
    return [c for c in table.column_names if c.startswith(prefix)]


def _fold_layers(table: pa.Table, group: str) -> pa.Table:
    """``group.<layer>`` columns -> entries of the ``group`` map (an existing map's entries
    are kept; a flattened column's value wins for its layer)."""
    cols = _flattened(table, group)
    if not cols:
        return table
    old = table.column(group).to_pylist() if group in table.column_names else \
        [None] * table.num_rows
    flat = {c[len(group) + 1:]: table.column(c).to_pylist() for c in cols}
    maps: list[Any] = []
    for i in range(table.num_rows):
        entry = dict(old[i] or [])
        entry.update({k: v[i] for k, v in flat.items() if v[i] is not None})
        maps.append(list(entry.items()) if entry else None)
    table = table.drop_columns(cols)
    arr = pa.array(maps, type=BASE[group])
    if group in table.column_names:
        return table.set_column(table.column_names.index(group), group, arr)
    return table.append_column(group, arr)


def _cast_column(col: pa.ChunkedArray, typ: pa.DataType) -> pa.ChunkedArray | pa.Array:
    if col.type == typ:
        return col
    try:
        return col.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        # value by value (JSON text to nested types, "3" to int); unconvertible -> null
        return pa.array([_convert(v, typ)[0] for v in col.to_pylist()], type=typ)


def upgrade(table: pa.Table) -> pa.Table:
    """Any version's rows -> every base column present, with its declared type."""
    for group in PER_LAYER:
        table = _fold_layers(table, group)
    for name, typ in BASE.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, typ))
        elif table.schema.field(name).type != typ:
            idx = table.column_names.index(name)
            table = table.set_column(idx, name, _cast_column(table.column(name), typ))
    return table


def _to_text(col: pa.ChunkedArray) -> pa.Array:
    if pa.types.is_nested(col.type):
        return pa.array([None if v is None else json.dumps(v, default=str)
                         for v in col.to_pylist()], type=pa.string())
    return col.cast(pa.string())


def _shape(t: pa.DataType) -> str:
    """A type's text with the names of list items and map entries left out (Parquet renames
    them: ``list<item: ...>`` reads back as ``list<element: ...>``)."""
    if pa.types.is_map(t):
        return f"map<{_shape(t.key_type)},{_shape(t.item_type)}>"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{_shape(t.value_type)}>"
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{t.field(i).name}:{_shape(t.field(i).type)}"
                                    for i in range(t.num_fields)) + ">"
    return str(t)


def unify(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate tables whose columns differ: a missing column is null; a column typed
    differently takes the common type (numbers: double; otherwise text)."""
    tables = [t for t in tables if t.num_columns]
    if not tables:
        return pa.table({"trial_id": pa.array([], pa.string())})
    if len(tables) == 1:
        return tables[0]
    first = tables[0].schema
    if all(t.schema.equals(first, check_metadata=False) for t in tables):
        return pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    types: dict[str, list[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            types.setdefault(f.name, []).append(f.type)
    want: dict[str, pa.DataType] = {}
    for name, ts in types.items():
        distinct = {_shape(t): t for t in ts if not pa.types.is_null(t)}
        want[name] = BASE.get(name, next(iter(distinct.values()))) if len(distinct) == 1 \
            else pa.null() if not distinct else common_type(list(distinct.values()))
    out = []
    for t in tables:
        for f in t.schema:
            typ = want[f.name]
            if f.type != typ and not pa.types.is_null(f.type):
                col = t.column(f.name)
                arr = _to_text(col) if pa.types.is_string(typ) else col.cast(typ)
                t = t.set_column(t.column_names.index(f.name), f.name, arr)
        out.append(t.replace_schema_metadata(None))
    return pa.concat_tables(out, promote_options="permissive")


def newest_rows(table: pa.Table) -> pa.Table:
    """One row per (sweep, trial_id): the one with the latest ``recorded_at`` (a row without
    one is the oldest; between equal ones, the later row in ``table``). Rows without a trial
    id are all kept."""
    if "trial_id" not in table.column_names or table.num_rows < 2:
        return table
    ids = table.column("trial_id").to_pylist()
    sweeps = table.column("sweep").to_pylist() if "sweep" in table.column_names else \
        [None] * table.num_rows
    if len(set(zip(sweeps, ids, strict=True))) == table.num_rows:
        return table
    stamp = np.full(table.num_rows, np.iinfo(np.int64).min, dtype=np.int64)
    if "recorded_at" in table.column_names:
        rec = table.column("recorded_at").cast(pa.int64())
        mask = np.asarray(rec.is_valid())
        stamp[mask] = np.asarray(rec.filter(rec.is_valid()))
    best: dict[tuple[Any, Any], int] = {}
    keep: list[int] = []
    for i, key in enumerate(zip(sweeps, ids, strict=True)):
        if key[1] is None:
            keep.append(i)
            continue
        j = best.get(key)
        if j is None or stamp[i] >= stamp[j]:
            best[key] = i
    dropped = table.num_rows - len(keep) - len(best)
    log.debug("dropped %d older copies of trial rows", dropped)
    return table.take(pa.array(sorted([*keep, *best.values()]), type=pa.int64()))


def with_layer_columns(table: pa.Table) -> pa.Table:
    """Add ``<group>.<layer>`` double columns from each per-layer map (layers in the order
    first seen)."""
    for group in PER_LAYER:
        if group not in table.column_names or not pa.types.is_map(table.schema.field(group).type):
            continue
        col = table.column(group).combine_chunks()
        if col.null_count == len(col) or len(col.keys) == 0:
            continue
        offsets = np.asarray(col.offsets)
        start = offsets[0]
        row_of = np.repeat(np.arange(len(col)), np.diff(offsets))
        keys = col.keys.slice(start, offsets[-1] - start)
        items = col.items.slice(start, offsets[-1] - start)
        values = np.asarray(items.fill_null(np.nan), dtype=np.float64)
        valid = np.asarray(items.is_valid())
        for layer in pc.unique(keys).to_pylist():
            name = f"{group}.{layer}"
            if name in table.column_names:
                continue
            hit = np.asarray(pc.equal(keys, layer).fill_null(False))
            out = np.full(len(col), np.nan)
            mask = np.zeros(len(col), dtype=bool)
            out[row_of[hit]] = values[hit]
            mask[row_of[hit & valid]] = True
            table = table.append_column(name, pa.array(out, mask=~mask, type=pa.float64()))
    return table
