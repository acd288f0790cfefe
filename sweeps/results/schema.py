"""The declared, versioned Arrow schema of a sweep's result rows.

One schema per sweep, written whole into every Parquet file of the sweep (a per-trial file and
a compacted ``part-*.parquet`` alike), so any Parquet reader reads the sweep's files with no
option: ``pandas.read_parquet(dir)``, ``polars.read_parquet("trials/*.parquet")``, DuckDB's
plain ``read_parquet('trials/*.parquet')`` and ``pyarrow.dataset.dataset(dir)``.

Columns, in this order:

* fixed columns (:data:`FIXED`): who, when, where, status; ``recorded_at`` is stamped by the
  store at each write and decides which row of a trial is the newest;
* every declared metric (``pruning_core/record.py``) with its declared type;
* structured columns: ``collapsed_layers`` (``list<string>``), ``layer_sparsity`` and
  ``similarity`` (``map<string, double>``: layer -> value), ``history`` (``list<struct<epoch,
  train_loss, train_accuracy, test_loss, test_accuracy, sparsity>>``), ``extra`` (a JSON object
  of any value the schema has no column for, so nothing is lost);
* the sweep's ``config.*`` columns, sorted, typed from the search space
  (:func:`sweeps.tune.schema_config.space_config_types`).

The Parquet key-value metadata holds ``prunetune.schema_version``, ``prunetune.objectives`` and
``prunetune.space`` (JSON). Files without a version are version 1 (before this schema): per-layer
values flattened into ``layer_sparsity.<layer>`` / ``similarity.<layer>`` columns and ``history``
as JSON text; :func:`sweeps.results.schema_read.upgrade` reads them into this layout.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from pruning_core.base.record import METRICS

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
META_VERSION = b"prunetune.schema_version"
META_OBJECTIVES = b"prunetune.objectives"
META_SPACE = b"prunetune.space"

TIMESTAMP = pa.timestamp("ms", tz="UTC")
LAYER_MAP = pa.map_(pa.string(), pa.float64())
#: per-layer values, one ``map<string, double>`` column each
PER_LAYER = ("layer_sparsity", "similarity", "layer_effective_sparsity")
HISTORY_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("epoch", pa.int64()), ("train_loss", pa.float64()), ("train_accuracy", pa.float64()),
    ("test_loss", pa.float64()), ("test_accuracy", pa.float64()), ("sparsity", pa.float64()),
)
HISTORY = pa.list_(pa.struct(list(HISTORY_FIELDS)))
EXTRA = "extra"

FIXED: tuple[tuple[str, pa.DataType], ...] = (
    ("sweep", pa.string()),
    ("trial_id", pa.string()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("failures", pa.int64()),
    ("node_id", pa.string()),
    ("node_ip", pa.string()),
    ("hostname", pa.string()),
    ("start_time", TIMESTAMP),
    ("end_time", TIMESTAMP),
    ("duration_s", pa.float64()),
    ("prunetune_version", pa.string()),
    ("seed", pa.int64()),
    ("last_epoch", pa.int64()),
    ("recorded_at", pa.timestamp("us", tz="UTC")),
)
METRIC_COLUMNS: tuple[tuple[str, pa.DataType], ...] = tuple(
    (m.name, getattr(pa, m.type)()) for m in METRICS)
#: the fixed and metric columns with their declared types (once ``store._TYPES``)
COLUMN_TYPES: dict[str, pa.DataType] = dict((*FIXED, *METRIC_COLUMNS))
STRUCTURED: tuple[tuple[str, pa.DataType], ...] = (
    ("collapsed_layers", pa.list_(pa.string())),
    ("layer_sparsity", LAYER_MAP),
    ("similarity", LAYER_MAP),
    ("layer_effective_sparsity", LAYER_MAP),
    ("history", HISTORY),
    (EXTRA, pa.string()),
)
#: every column a row has whatever the sweep (the ``config.*`` columns come on top)
BASE: dict[str, pa.DataType] = dict((*FIXED, *METRIC_COLUMNS, *STRUCTURED))


def sweep_schema(config_types: Mapping[str, pa.DataType] | None = None,
                 objectives: list[dict[str, str]] | None = None,
                 space: Mapping[str, Any] | None = None) -> pa.Schema:
    """The schema of a sweep's rows: base columns then its ``config.*`` columns (sorted)."""
    fields = [pa.field(n, t) for n, t in BASE.items()]
    fields += [pa.field(n, t) for n, t in sorted((config_types or {}).items()) if n not in BASE]
    meta = {META_VERSION: str(SCHEMA_VERSION).encode()}
    if objectives is not None:
        meta[META_OBJECTIVES] = json.dumps(objectives).encode()
    if space is not None:
        meta[META_SPACE] = json.dumps(space, default=str).encode()
    return pa.schema(fields, metadata=meta)


def schema_version(schema: pa.Schema) -> int:
    """The version a file's schema declares (1: written before the declared schema)."""
    raw = (schema.metadata or {}).get(META_VERSION)
    try:
        return int(raw) if raw is not None else 1
    except ValueError:
        return 1


# --------------------------------------------------------------------------- value types
def value_type(value: Any) -> pa.DataType | None:
    """The Arrow type of one config value (None: no information, the value is null)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


def common_type(types: list[pa.DataType | None]) -> pa.DataType:
    """One type for values of these types: the same type, ``double`` for a mix of numbers,
    else ``string`` (also when nothing is known)."""
    known = {t for t in types if t is not None and not pa.types.is_null(t)}
    if len(known) == 1:
        return known.pop()
    if known and all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in known):
        return pa.float64()
    return pa.string()


# --------------------------------------------------------------------------- rows
def infer_schema(row: Mapping[str, Any]) -> pa.Schema:
    """A schema for an ad-hoc row (no declared config types): base columns plus the row's
    other columns, typed from their values."""
    return sweep_schema({k: common_type([value_type(v)]) for k, v in row.items()
                         if k not in BASE and not _layer_key(k)})


def _layer_key(key: str) -> str | None:
    """``layer_sparsity.fc.weight`` -> ``layer_sparsity`` (a flattened per-layer column)."""
    group = key.split(".", 1)[0]
    return group if group in PER_LAYER and "." in key else None


def decoded(value: Any) -> Any:
    """A report's JSON text (history, per-layer values) -> Python (NaN stays NaN)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _number(value: Any, typ: pa.DataType) -> tuple[Any, bool]:
    """(value as ``typ``, ok). NaN stays NaN in a double column and is null in an int one."""
    if value is None:
        return None, True
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None, False
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if not isinstance(value, int | float):
        return None, False
    if pa.types.is_integer(typ):
        if isinstance(value, float):
            if not math.isfinite(value):
                return None, True
            if value != int(value):
                return None, False
        return int(value), True
    return float(value), True


def _convert(value: Any, typ: pa.DataType) -> tuple[Any, bool]:
    """``value`` as a Python value of Arrow type ``typ``; (None, False) when it is not one."""
    if value is None:
        return None, True
    if pa.types.is_map(typ):
        obj = decoded(value)
        if not isinstance(obj, Mapping):
            return None, obj is None
        out = []
        for k, v in obj.items():
            num, ok = _number(v, pa.float64())
            out.append((str(k), num if ok else math.nan))
        return out, True
    if pa.types.is_list(typ):
        obj = decoded(value)
        if not isinstance(obj, list | tuple):
            return None, obj is None
        item = typ.value_type
        if pa.types.is_struct(item):
            names = [item.field(i).name for i in range(item.num_fields)]
            rows = []
            for e in obj:
                if not isinstance(e, Mapping):
                    return None, False
                rows.append({n: _number(e.get(n), item.field(n).type)[0] for n in names})
            return rows, True
        return [str(x) for x in obj], True
    if pa.types.is_timestamp(typ):
        if isinstance(value, dt.datetime):
            return value, True
        if isinstance(value, int | float) and math.isfinite(value):
            return dt.datetime.fromtimestamp(value, dt.UTC), True
        return None, False
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        if isinstance(value, bool):
            return None, False
        return _number(value, typ)
    if pa.types.is_boolean(typ):
        return (value, True) if isinstance(value, bool) else (None, False)
    if isinstance(value, list | dict):
        return json.dumps(value, default=_json_default), True
    return str(value), True


def _json_default(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def row_table(row: Mapping[str, Any], schema: pa.Schema | None = None) -> pa.Table:
    """One row -> a one-row table with exactly ``schema``'s columns (nulls where the row has no
    value). Flattened per-layer keys (``layer_sparsity.<layer>``) fold into their map; lists
    and dicts may be given as JSON text. A value that does not fit its column, or has no
    column, goes into ``extra`` (a JSON object), so nothing is lost."""
    return rows_table([row], schema or infer_schema(row))


def rows_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows -> one table with exactly ``schema``'s columns, each row as :func:`row_table`
    makes it (one Arrow conversion for them all: the recorder's batched writes)."""
    cols: dict[str, list[Any]] = {f.name: [] for f in schema}
    cols[EXTRA] = []
    for row in rows:
        for name, value in _row_values(row, schema).items():
            cols[name].append(value)
    return pa.Table.from_pydict(cols, schema=schema)


def _row_values(row: Mapping[str, Any], schema: pa.Schema) -> dict[str, Any]:
    """One row's value per column of ``schema`` (``row_table``'s rules)."""
    names = set(schema.names)
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    layers: dict[str, dict[str, Any]] = {}
    for key, value in row.items():
        group = _layer_key(key) if key not in names else None
        if group:
            layers.setdefault(group, {})[key[len(group) + 1:]] = value
        elif key in names and key != EXTRA:
            values[key] = value
        elif key == EXTRA and isinstance(decoded(value), dict):
            extra.update(decoded(value))
        elif value is not None:
            extra[key] = value
    for group, flat in layers.items():
        merged = dict(decoded(values.get(group)) or {})
        merged.update(flat)
        values[group] = merged
    out: dict[str, Any] = {}
    for field in schema:
        if field.name == EXTRA:
            continue
        conv, ok = _convert(values.get(field.name), field.type)
        if not ok:
            extra[field.name] = values[field.name]
        out[field.name] = conv
    out[EXTRA] = json.dumps(extra, default=_json_default, sort_keys=True) if extra else None
    if extra:
        log.debug("row %s: values kept in %r: %s", row.get("trial_id"), EXTRA, sorted(extra))
    return out
