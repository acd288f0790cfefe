"""The note on a trial a reader should not take at face value: chance accuracy, a collapsed
layer. One rule, :func:`trial_note`, used by every table the CLI prints and, computed for a
whole frame at once, by the report (``report_flags.py`` takes its constants from here).

**Chance.** ``test_accuracy <= 1/K + CHANCE_MARGIN`` (margin 0.02), K the number of classes
from, in order: a ``num_classes`` / ``config.data.num_classes`` column; ``num_classes`` in the
JSON ``config.data.options`` (the ``synthetic`` dataset); the dataset named in
``config.data.name`` when its class count is fixed (:data:`KNOWN_CLASSES`). When K is still
unknown (a user's data factory, ``imagefolder``) 10 classes are assumed (chance 0.1) and the
note says so: ``chance? (10 classes assumed)`` (the report: ``chance accuracy?``).

**Collapsed.** ``n_collapsed > 0``: a layer with every weight pruned, which disconnects the
network (``collapsed: 2``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from sweeps.results.sql_sandbox import quote_ident, sql_string

CHANCE_MARGIN = 0.02
#: datasets whose number of classes is fixed (as ``pruning_core.workloads.data``; no torch)
KNOWN_CLASSES: dict[str, int] = {
    "digits": 10, "mnist1d": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10,
    "cifar100": 100,
}
#: classes assumed when the data is unknown (the note then says so)
ASSUMED_CLASSES = 10
#: the column every CLI table adds for :func:`trial_note`
NOTE_COLUMN = "note"
#: what the notes mean, for a table's caption
LEGEND = (f"note: chance = test_accuracy ≤ 1/classes + {CHANCE_MARGIN}; "
          "collapsed: N = layers with every weight pruned")


def _number(v: Any) -> float:
    """``v`` as a finite float, else NaN (None, NaN, text, numpy scalars all handled)."""
    if v is None or isinstance(v, bool):
        return math.nan
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


#: where the number of classes is read, in this order (how the report names each source)
CLASS_SOURCES: tuple[str, ...] = (
    "the num_classes column", "the config.data.num_classes column",
    "num_classes in config.data.options", "the dataset's fixed class count (config.data.name)")


def class_count(row: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """The number of classes of a trial's data and its source (one of :data:`CLASS_SOURCES`),
    or ``(None, None)`` when the row does not tell."""
    for col, source in zip(("num_classes", "config.data.num_classes"), CLASS_SOURCES,
                           strict=False):
        k = _number(row.get(col))
        if k >= 2:
            return int(k), source
    options = row.get("config.data.options")
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            options = None
    if isinstance(options, Mapping):
        k = _number(options.get("num_classes"))
        if k >= 2:
            return int(k), CLASS_SOURCES[2]
    name = row.get("config.data.name")
    k_name = KNOWN_CLASSES.get(name) if isinstance(name, str) else None
    return (k_name, CLASS_SOURCES[3]) if k_name is not None else (None, None)


def num_classes(row: Mapping[str, Any]) -> int | None:
    """The number of classes of a trial's data, or None when the row does not tell."""
    return class_count(row)[0]


def chance_threshold(k: Any) -> Any:
    """The chance rule: a trial whose ``test_accuracy`` is at or below ``1/K +
    CHANCE_MARGIN`` is at chance (K classes; a number or a numpy array of them)."""
    return 1.0 / k + CHANCE_MARGIN


def trial_note(row: Mapping[str, Any]) -> str:
    """``""``, ``"chance"``, ``"chance? (10 classes assumed)"``, ``"collapsed: 2"`` or both
    joined by ``", "``, for one results row (full column names, as in the Parquet files)."""
    parts = []
    acc = _number(row.get("test_accuracy"))
    if not math.isnan(acc):
        k = num_classes(row)
        if acc <= chance_threshold(k or ASSUMED_CLASSES):
            parts.append("chance" if k else f"chance? ({ASSUMED_CLASSES} classes assumed)")
    collapsed = _number(row.get("n_collapsed"))
    if collapsed > 0:
        parts.append(f"collapsed: {int(collapsed)}")
    return ", ".join(parts)


def notes(rows: Iterable[Mapping[str, Any]]) -> list[str] | None:
    """:func:`trial_note` per row, or None when no row has a note (the table stays as it
    was)."""
    out = [trial_note(r) for r in rows]
    return out if any(out) else None


#: the columns :func:`trial_note` reads
NOTE_INPUTS = ("test_accuracy", "n_collapsed", "num_classes", "config.data.num_classes",
               "config.data.options", "config.data.name")


def add_note(df: Any, res: Any) -> Any:
    """``df`` (rows of a :class:`sweeps.results.pareto.Results` query with a ``trial_id``
    column) with a ``note`` column from :func:`trial_note`, looked up by trial id in ``res``;
    ``df`` unchanged when it has no ``trial_id`` column or no row has a note.

    For ``prunetune pareto`` and ``prunetune query`` tables, inside their ``with Results(...)
    as res:`` block: ``front = add_note(front, res)``."""
    if "trial_id" not in df.columns or not len(df) or NOTE_COLUMN in df.columns:
        return df
    cols = [c for c in NOTE_INPUTS if c in res.raw_columns]
    if not cols or "trial_id" not in res.raw_columns:
        return df
    ids = sorted({str(t) for t in df["trial_id"] if t is not None})
    if not ids:
        return df
    sql = (f"SELECT trial_id, {', '.join(quote_ident(c) for c in cols)} FROM trials "
           f"WHERE trial_id IN ({', '.join(sql_string(t) for t in ids)})")
    found = {str(r["trial_id"]): trial_note(r) for r in res.query(sql).to_dict("records")}
    out = [found.get(str(t), "") for t in df["trial_id"]]
    if not any(out):
        return df
    return df.assign(**{NOTE_COLUMN: out})
