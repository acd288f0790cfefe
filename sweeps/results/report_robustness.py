"""The report's robustness sections (issue 18): best adversarial accuracy against sparsity,
the generalisation gap, effective against nominal sparsity, and the doomed trials' table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sweeps.results.jsonable import json_scalar
from sweeps.results.report_data import MAX_TABLE_ROWS, ReportData
from sweeps.results.report_rows import col, count, priority, staircases, trial_ids
from sweeps.results.statuses import DOOMED


def robustness(data: ReportData, df: pd.DataFrame, eligible: np.ndarray, inc: np.ndarray,
                doomed: np.ndarray, groups: np.ndarray, by_full: str | None,
                limit: int) -> None:
    """Adversarial accuracy (from the front's rows), gap, effective sparsity, doomed table."""
    data.adv_curves = staircases(df[eligible].reset_index(drop=True), groups[eligible],
                                  "adv_accuracy")
    _gap(data, df, inc, groups, limit)
    _effective(data, df, doomed, groups, limit)
    _doomed(data, df, doomed, by_full)


def _gap(data: ReportData, df: pd.DataFrame, inc: np.ndarray, groups: np.ndarray,
         limit: int) -> None:
    """Generalisation gap (``gap_accuracy``) against sparsity of the included trials, per
    group; where the gap is not recorded (older results), train_accuracy - test_accuracy,
    which is how it is recorded."""
    x, gap = col(df, "sparsity"), col(df, "gap_accuracy")
    derived = ~np.isfinite(gap)
    gap = np.where(derived, col(df, "train_accuracy") - col(df, "test_accuracy"), gap)
    ok = inc & np.isfinite(x) & np.isfinite(gap)
    pick = np.flatnonzero(ok)[priority(np.zeros(int(ok.sum()), dtype=bool), limit)]
    data.gap_derived = int(derived[pick].sum())
    ids = trial_ids(df)
    for i in np.sort(pick):
        data.gap.setdefault(str(groups[i]), []).append(
            [float(x[i]), float(gap[i]), str(ids[i])])


def _effective(data: ReportData, df: pd.DataFrame, doomed: np.ndarray, groups: np.ndarray,
               limit: int) -> None:
    """Effective against nominal (achieved) sparsity of every trial recording both, per group,
    the doomed apart. A point above the diagonal has weights on no input->output path."""
    x, y = col(df, "sparsity"), col(df, "effective_sparsity")
    disc, dead = col(df, "disconnected_weights"), col(df, "dead_units")
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return
    pick = np.flatnonzero(ok)[priority(doomed[ok], limit)]
    ids = trial_ids(df)
    out: dict[str, Any] = {"groups": {}, "doomed": [],
                           "above": int((y[ok] > x[ok] + 1e-9).sum())}
    for i in np.sort(pick):
        row = [float(x[i]), float(y[i]), str(ids[i]), count(disc[i]), count(dead[i])]
        (out["doomed"] if doomed[i] else out["groups"].setdefault(str(groups[i]), [])
         ).append(row)
    data.effective = out


def _doomed(data: ReportData, df: pd.DataFrame, doomed: np.ndarray, by_full: str | None
            ) -> None:
    """The doomed trials' table: trial id, group, achieved sparsity and the reason (the
    ``error`` text less its ``doomed: `` prefix); at most MAX_TABLE_ROWS rows."""
    idx = np.flatnonzero(doomed)
    ids, sp = trial_ids(df), col(df, "sparsity")
    err = df["error"] if "error" in df.columns else pd.Series([None] * len(df))
    rows = []
    for i in idx[:MAX_TABLE_ROWS]:
        reason = "" if pd.isna(err.iat[i]) else str(err.iat[i])
        rows.append([str(ids[i]), None if by_full is None else json_scalar(df.at[i, by_full]),
                     json_scalar(sp[i]), reason.removeprefix(f"{DOOMED}: ")])
    data.doomed = {"columns": ["trial_id", data.by or "group", "sparsity", "reason"],
                   "rows": rows, "total": len(idx)}
