"""A report's numbers from the rows: columns as floats, trial ids, the rows drawn when there are
too many, and the best-value staircases per group (used by ``report`` and
``report_robustness``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def num(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def col(df: pd.DataFrame, col: str) -> np.ndarray:
    """``col`` as floats, all NaN when the frame has no such column (older results)."""
    return num(df, col) if col in df.columns else np.full(len(df), np.nan)


def count(v: float) -> int | None:
    return int(v) if np.isfinite(v) else None


def trial_ids(df: pd.DataFrame) -> np.ndarray:
    if "trial_id" in df.columns:
        return df["trial_id"].astype(str).to_numpy()
    return np.array([str(i) for i in range(len(df))], dtype=object)


def priority(first: np.ndarray, limit: int) -> np.ndarray:
    """Row indices: every ``first`` row, then a seeded sample of the others, ``limit`` in all
    (the ``first`` rows are kept even past it)."""
    lead = np.flatnonzero(first)
    rest = np.flatnonzero(~first)
    room = max(0, limit - len(lead))
    if len(rest) > room:
        rest = np.sort(np.random.default_rng(0).choice(rest, room, replace=False))
    return np.r_[lead, rest].astype(int)


def staircases(df: pd.DataFrame, groups: np.ndarray, metric: str) -> dict[str, list[list[Any]]]:
    """Per group, the best ``metric`` at achieved sparsity >= x (the ``sparsity`` column,
    the one every other plot uses): the trials that set it, sparsest last, as
    ``[sparsity, metric, trial id]``. Drawn as a staircase, like a front. Empty when no row
    has both values (the column absent or all null: older results)."""
    if metric not in df.columns or "sparsity" not in df.columns:
        return {}
    x, y = num(df, "sparsity"), num(df, metric)
    ok = np.isfinite(x) & np.isfinite(y)
    ids = trial_ids(df)
    out: dict[str, list[list[Any]]] = {}
    for g in sorted(set(groups[ok].tolist())):
        sel = np.flatnonzero(ok & (groups == g))
        sel = sel[np.lexsort((-y[sel], -x[sel]))]  # sparsest first, best first among ties
        best = np.maximum.accumulate(y[sel])
        sets = np.r_[True, best[1:] > best[:-1]]  # a trial that beats every sparser one
        out[str(g)] = [[float(x[i]), float(y[i]), str(ids[i])] for i in sel[sets][::-1]]
    return out
