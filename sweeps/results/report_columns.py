"""Reading the report's structured columns, whatever shape the rows store them in.

* Per-layer values (``layer_sparsity``, ``similarity``): one column per layer
  (``similarity.<layer>``, what the recorder writes), or one column holding ``{layer: value}``
  as a JSON string, a dict or a list of ``(key, value)`` pairs (an Arrow ``map``).
* ``history``: a JSON list of per-epoch dicts, or that list already decoded (an Arrow
  ``list<struct>`` reads as a sequence of dicts).
* Searched parameters: the ``config.*`` columns whose value varies over the rows.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweeps.results.report_style import number_labels

log = logging.getLogger(__name__)

MAX_CATEGORIES = 30  # a text config column with more distinct values is not a parameter
SKIP_PARAMS = ("config.tags", "config.data.root", "config.model.weights")


def _decode(value: Any) -> Any:
    """A cell -> Python object: JSON text decoded, numpy arrays to lists; None for empty."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except ValueError:
            return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _as_mapping(value: Any) -> dict[str, float]:
    obj = _decode(value)
    if isinstance(obj, dict):
        items = list(obj.items())
    elif isinstance(obj, list | tuple):  # Arrow map: [(k, v), ...] or [{"key":, "value":}]
        items = []
        for it in obj:
            if isinstance(it, dict) and "key" in it:
                items.append((it["key"], it.get("value")))
            elif isinstance(it, list | tuple) and len(it) == 2:
                items.append((it[0], it[1]))
    else:
        return {}
    out: dict[str, float] = {}
    for k, v in items:
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            out[str(k)] = math.nan
    return out


def layer_order(df: pd.DataFrame, name: str) -> list[str]:
    """The layers of ``name``'s per-layer maps in the network's order: a map keeps the order
    the pruner recorded its layers in (the model's own), the rows' orders are merged, each
    layer where it was first seen. Empty when there is no map column (only flattened
    ``name.<layer>`` columns, which the results view orders by name)."""
    if name not in df.columns:
        return []
    return list(dict.fromkeys(k for v in df[name] for k in _as_mapping(v)))


def per_layer(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """``name`` per layer: a float frame (same index as ``df``, one column per layer, in the
    network's order when the rows carry the ``name`` map, :func:`layer_order`; otherwise in
    column order). Empty (no columns) when the rows carry none."""
    prefix = f"{name}."
    dotted = [c for c in df.columns if c.startswith(prefix)]
    if dotted:
        out = pd.DataFrame({c[len(prefix):]: pd.to_numeric(df[c], errors="coerce")
                            for c in dotted}, index=df.index).astype(np.float64)
        order = layer_order(df, name)
        known = [layer for layer in order if layer in out.columns]
        return out[known + [c for c in out.columns if c not in set(known)]]
    if name not in df.columns:
        return pd.DataFrame(index=df.index)
    maps = [_as_mapping(v) for v in df[name]]
    layers = list(dict.fromkeys(k for m in maps for k in m))
    return pd.DataFrame([[m.get(layer, math.nan) for layer in layers] for m in maps],
                        columns=layers, index=df.index, dtype=np.float64)


def history(value: Any) -> list[dict[str, Any]]:
    """One row's ``history`` cell -> list of per-epoch dicts (empty when absent)."""
    obj = _decode(value)
    if not isinstance(obj, list | tuple):
        return []
    return [dict(e) for e in obj if isinstance(e, dict)]


def searched_params(df: pd.DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """``config.*`` columns with more than one distinct value over ``df`` (the sweep's searched
    dimensions, seen from its rows). Text columns with more than ``MAX_CATEGORIES`` distinct
    values (paths, free text) and ``SKIP_PARAMS`` are left out."""
    out = []
    for c in df.columns:
        if not c.startswith("config.") or c in exclude or c in SKIP_PARAMS:
            continue
        col = df[c]
        try:
            distinct = col.dropna().astype(str).nunique()
        except (TypeError, ValueError):
            continue
        if distinct < 2 and not (col.isna().any() and distinct == 1):
            continue
        if not is_numeric(col) and distinct > MAX_CATEGORIES:
            continue
        out.append(c)
    return out


def is_numeric(col: pd.Series) -> bool:
    """Numbers (not booleans) with no missing value: a continuous axis."""
    return (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
            and not col.isna().any())


def as_category(col: pd.Series) -> pd.Series:
    """A column as text labels for a categorical axis; missing values read ``(none)``."""
    return col.map(lambda v: "(none)" if v is None or (isinstance(v, float) and math.isnan(v))
                   else str(v)).astype(object)


def _number(v: Any) -> float | None:
    """A cell's value as a finite number (numbers, and text such as ``"0.5"`` from a column
    stored as text), else None."""
    if isinstance(v, bool | np.bool_):
        return None
    if isinstance(v, int | float | np.integer | np.floating):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def category_axis(col: pd.Series) -> tuple[list[int], list[str]]:
    """A column as a categorical axis: each row's code and the axis' tick labels. Numbers come
    first, in numeric order, as short labels (``report_style.number_labels``: never a raw
    float such as ``471.89989675277036``), then text in sorted order, then ``(none)``."""
    cats = as_category(col)
    nums = {c: f for c, f in ((c, _number(v)) for c, v in zip(cats, col, strict=True))
            if f is not None}
    numbers = sorted(set(nums.values()))
    texts = sorted(set(cats) - set(nums) - {"(none)"}) + (["(none)"] * ("(none)" in set(cats)))
    labels = [*number_labels(numbers), *texts]
    code_of_num = {f: i for i, f in enumerate(numbers)}
    code_of_text = {t: len(numbers) + i for i, t in enumerate(texts)}
    codes = [code_of_num[nums[c]] if c in nums else code_of_text[c] for c in cats]
    return codes, labels
