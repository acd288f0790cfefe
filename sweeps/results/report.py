"""``prunetune report``: one self-contained HTML page (and PNGs) about a sweep's results.

:func:`build_report` collects everything the page shows into a :class:`ReportData`;
``report_html.render_html`` draws it with plotly (its JS inlined: the file works offline) and
``report_png.write_pngs`` draws the same main figures with matplotlib for papers. Colours
come from ``report_style`` in both, so a criterion has one colour everywhere.

What is shown: every trial coloured by status, with the front of the included statuses drawn
as a staircase; one front per ``--by`` group; best accuracy against (achieved) sparsity, a
staircase; parallel coordinates over the searched parameters and objectives (ticks as short
numbers); parameter importance per objective (``report_importance``); learning curves from
``history``, one trace per trial; per-layer sparsity and (when recorded) per-layer similarity
of the front's trials, layers in the network's order; hypervolume against trial count; a
filterable table of the trials. Trials at chance accuracy or with a collapsed layer are flagged
(``report_flags``); by default (``hide_chance``) the fronts leave out those at chance accuracy.

Robustness (issue 18): best adversarial accuracy against sparsity (a staircase, when some trial
has ``adv_accuracy``), the generalisation gap against sparsity, effective against nominal
sparsity. Doomed trials (status ``doomed``: ended before training, no input->output path) never
enter a front, a curve or importance, whatever ``statuses`` says; they are listed apart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sweeps.results.aliases import display_name
from sweeps.results.fronts import pareto_mask
from sweeps.results.hypervolume import derive_reference, hypervolume, hypervolume_history_values
from sweeps.results.jsonable import json_scalar
from sweeps.results.objectives import Objective, parse_objectives
from sweeps.results.reader import Results
from sweeps.results.report_columns import (
    category_axis,
    history,
    is_numeric,
    per_layer,
    searched_params,
)
from sweeps.results.report_data import MAX_TABLE_ROWS, ReportData
from sweeps.results.report_flags import flag_trials
from sweeps.results.report_html import render_html
from sweeps.results.report_importance import param_importances
from sweeps.results.report_png import write_pngs
from sweeps.results.report_robustness import robustness
from sweeps.results.report_rows import num, priority, staircases, trial_ids
from sweeps.results.report_style import group_colors
from sweeps.results.statuses import DONE_STATUSES, DOOMED

__all__ = ["ReportData", "build_report", "render_html", "write_pngs", "write_report"]

log = logging.getLogger(__name__)

MAX_POINTS = 5000  # other trials drawn at most (a sample); front and flagged ones always are
MAX_CURVES = 300  # learning curves drawn at most (front and flagged first)
HOVER_COLUMNS = ("trial_id", "status", "config.prune.criterion", "config.prune.schedule",
                 "config.prune.steps", "config.prune.allocation.name", "config.prune.timing.name",
                 "config.model.name", "test_accuracy", "sparsity", "target_sparsity",
                 "params_kept", "flops", "n_collapsed", "epochs")
TABLE_COLUMNS = (*HOVER_COLUMNS, "test_loss", "train_accuracy", "similarity_mean",
                 "adv_accuracy", "gap_accuracy", "effective_sparsity", "disconnected_weights",
                 "dead_units", "prune_time_s", "train_time_s", "end_time")
#: the table's columns shown at first (with trial_id, --by, the objectives and the first
#: TABLE_SHOWN_PARAMS searched parameters); the others are a tick away, so the table fits
TABLE_SHOWN = ("status", "sparsity", "test_accuracy", "epochs")
TABLE_SHOWN_PARAMS = 4


def build_report(res: Results, objectives: Sequence[str | Objective], by: str | None = None,
                 where: str | None = None, statuses: Sequence[str] | None = DONE_STATUSES,
                 ref: Sequence[float] | None = None, title: str | None = None,
                 max_points: int = MAX_POINTS, hide_chance: bool = True) -> ReportData:
    """Collect the report's data from a :class:`Results` (reads all rows passing ``where``).

    Fronts, hypervolumes, curves and importance use the rows of ``statuses`` (all when None),
    never doomed ones (listed apart: ``ReportData.doomed``); the scatter, learning curves and
    the table show every status. ``hide_chance`` (default) leaves trials at chance accuracy
    (``report_flags``) out of the fronts, the hypervolumes and the best-accuracy curve; they
    stay in the scatter (flagged), the table and importance.
    """
    objs = parse_objectives(objectives)
    objs = [Objective(res.resolve(o.column), o.mode) for o in objs]
    cols = [o.column for o in objs]
    modes = [o.mode for o in objs]
    if by is None and "config.prune.criterion" in res.raw_columns:
        by = "config.prune.criterion"
    by_full = res.resolve(by) if by else None
    df = res.load(where, statuses=None, columns=res.raw_columns).reset_index(drop=True)
    n = len(df)
    status = _labels(df, "status", "ok")
    doomed = status == DOOMED  # never on a front, whatever statuses says
    inc = (np.isin(status, list(statuses)) if statuses is not None
           else np.ones(n, dtype=bool)) & ~doomed
    vals = np.column_stack([num(df, c) for c in cols]) if n else np.empty((0, len(objs)))
    finite = np.isfinite(vals).all(axis=1)
    if not (finite & inc).any():
        raise ValueError("no completed trial has finite values for "
                         + ", ".join(str(o) for o in objs))
    ref_arr = np.asarray(ref, dtype=np.float64) if ref is not None else \
        derive_reference(vals[inc], modes)
    groups_arr = _labels(df, by_full, "all")
    groups = sorted(set(groups_arr[inc & finite].tolist()))
    data = ReportData(
        title=title or _default_title(df), objectives=objs,
        labels=[display_name(c, res.aliases) for c in cols], ref=[float(x) for x in ref_arr],
        by=display_name(by_full, res.aliases) if by_full else None, n_rows=n,
        n_included=int((finite & inc).sum()),
        included_statuses=[s for s in statuses if s != DOOMED] if statuses is not None
        else None,
        groups=groups, colors=group_colors(groups), hide_chance=hide_chance)
    flags, flag_text = _flags(data, df, doomed)
    eligible = _front_rows(data, inc & finite, flags.chance)
    front, gfront = _fronts(data, vals, eligible, modes, ref_arr, groups_arr)
    _status_counts(data, status, finite)

    _points(data, df, vals, finite, front, gfront, status, groups_arr, flag_text, res,
            max_points, cols)
    _curves(data, df[eligible].reset_index(drop=True), groups_arr[eligible], res)
    robustness(data, df, eligible, inc, doomed, groups_arr, by_full, max_points)
    _layers(data, df, front, vals, objs, groups_arr)
    _hv_history(data, df, vals, modes, ref_arr, eligible, groups_arr, groups)
    _learning(data, df, front, flags.any, status, groups_arr)
    params = _params(data, df[inc & finite], by_full, cols, modes, res, max_points)
    _tables(data, df, front, flag_text, status, objs, by_full, params, res)
    return data


def _labels(df: pd.DataFrame, col: str | None, default: str) -> np.ndarray:
    """``col`` as text per row (missing: ``"(none)"``), or ``default`` everywhere when there
    is no such column."""
    if not col or col not in df.columns:
        return np.full(len(df), default, dtype=object)
    return df[col].astype(object).where(df[col].notna(), "(none)").astype(str).to_numpy()


def _flags(data: ReportData, df: pd.DataFrame, doomed: np.ndarray) -> tuple[Any, np.ndarray]:
    """The flags of every row (doomed rows are listed apart, not flagged) and their text."""
    flags = flag_trials(df)
    flags.chance &= ~doomed  # listed apart: the reason says more than a flag
    flags.collapsed &= ~doomed
    data.flag_rules = flags.rules
    data.n_flagged = int(flags.any.sum())
    text = np.array([flags.label(i) if flags.any[i] else "" for i in range(len(df))],
                    dtype=object)
    return flags, text


def _status_counts(data: ReportData, status: np.ndarray, finite: np.ndarray) -> None:
    for s in dict.fromkeys(sorted(set(status.tolist()), key=_status_order)):
        m = status == s
        data.status_counts[s] = {"rows": int(m.sum()), "plotted": int((m & finite).sum())}


def _params(data: ReportData, rows: pd.DataFrame, by_full: str | None, cols: list[str],
            modes: list[str], res: Results, max_points: int) -> list[str]:
    """The searched parameters (the ``--by`` column first): their parallel coordinates and
    importance per objective; returns their full names."""
    varied = searched_params(rows, exclude=cols)
    params = sorted(varied, key=lambda c: c != by_full)  # the --by column first
    data.params = [display_name(p, res.aliases) for p in params]
    _parcoords(data, rows, params, cols, res, max_points)
    imp, data.importance_note = param_importances(rows, params, cols, modes)
    data.importance = {display_name(o, res.aliases): {display_name(p, res.aliases): v
                                                      for p, v in d.items()}
                       for o, d in imp.items()}
    return params


def _front_rows(data: ReportData, rows: np.ndarray, chance: np.ndarray) -> np.ndarray:
    """The rows the fronts are made of: ``rows`` less those at chance accuracy when
    ``data.hide_chance`` (all of ``rows`` if every one of them is at chance)."""
    at_chance = rows & chance
    data.n_chance = int(at_chance.sum())
    if not data.hide_chance or not at_chance.any():
        return rows
    if not (rows & ~chance).any():
        log.warning("every trial is at chance accuracy: the fronts keep them")
        data.hide_chance = False
        return rows
    return rows & ~chance


def _fronts(data: ReportData, vals: np.ndarray, eligible: np.ndarray, modes: list[str],
            ref: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The overall and per-group front masks of the ``eligible`` rows; fills the group fronts
    (sorted by the second objective, best first) and the hypervolumes."""
    n = len(vals)
    front = np.zeros(n, dtype=bool)
    front[np.flatnonzero(eligible)] = pareto_mask(vals[eligible], modes)
    gfront = np.zeros(n, dtype=bool)
    data.hypervolumes["all"] = hypervolume(vals[front], modes, ref)
    for g in data.groups:
        sel = np.flatnonzero((groups == g) & eligible)
        m = pareto_mask(vals[sel], modes) if len(sel) else np.zeros(0, dtype=bool)
        gfront[sel[m]] = True
        fv = vals[sel[m]]
        order = np.argsort(fv[:, 1] if modes[1] == "min" else -fv[:, 1], kind="stable")
        data.group_fronts[g] = fv[order].tolist()
        data.hypervolumes[g] = hypervolume(fv, modes, ref) if len(fv) else 0.0
    return front, gfront


_STATUS_ORDER = ("ok", "stopped_early", "diverged", DOOMED, "error", "interrupted")


def _status_order(s: str) -> tuple[int, str]:
    return (_STATUS_ORDER.index(s) if s in _STATUS_ORDER else len(_STATUS_ORDER), s)


def _default_title(df: pd.DataFrame) -> str:
    if "sweep" in df.columns and df["sweep"].notna().any():
        names = sorted(set(df["sweep"].dropna().astype(str)))
        return "prunetune report: " + ", ".join(names[:3]) + ("…" if len(names) > 3 else "")
    return "prunetune report"


def _points(data: ReportData, df: pd.DataFrame, vals: np.ndarray, finite: np.ndarray,
            front: np.ndarray, gfront: np.ndarray, status: np.ndarray, groups: np.ndarray,
            flag_text: np.ndarray, res: Results, max_points: int, cols: list[str]) -> None:
    """Every trial with all objectives finite (any status): all front ones, then up to
    ``max_points`` others, flagged ones first, the rest a seeded sample."""
    keep = finite & (front | gfront)
    pool = np.flatnonzero(finite & ~keep)
    rest = pool[priority(flag_text[pool] != "", max_points)][:max_points]
    hover = [c for c in HOVER_COLUMNS if c in df.columns and c not in cols]
    ids = trial_ids(df)
    for i in np.r_[np.flatnonzero(keep), np.sort(rest)]:
        p: dict[str, Any] = {"id": ids[i], "v": [float(x) for x in vals[i]],
                             "g": str(groups[i]), "s": str(status[i]), "f": int(front[i]),
                             "gf": int(gfront[i]), "x": str(flag_text[i])}
        p["h"] = {display_name(c, res.aliases): json_scalar(df.at[i, c]) for c in hover}
        data.points.append(p)


def _curves(data: ReportData, df: pd.DataFrame, groups: np.ndarray, res: Results) -> None:
    """Per group, the best test accuracy at achieved sparsity >= x (:func:`staircases`)."""
    data.curves = staircases(df, groups, "test_accuracy")
    if data.curves:
        data.curve_axes = [display_name("sparsity", res.aliases), "test_accuracy"]


def _layers(data: ReportData, df: pd.DataFrame, front: np.ndarray, vals: np.ndarray,
            objs: Sequence[Objective], groups: np.ndarray) -> None:
    """Per-layer sparsity (heatmap) and similarity (lines) of the front's trials."""
    idx = np.flatnonzero(front)
    if not len(idx):
        return
    idx = idx[np.argsort(-vals[idx, 0] if objs[0].mode == "max" else vals[idx, 0],
                         kind="stable")]
    ids = trial_ids(df)[idx]
    sub = df.iloc[idx]
    sp = per_layer(sub, "layer_sparsity")
    if sp.shape[1]:
        data.heatmap = {
            "rows": ids.tolist(), "cols": list(sp.columns),
            "row_labels": [f"{i}  ({data.labels[0]} {vals[j, 0]:.4g})"
                           for i, j in zip(ids, idx, strict=True)],
            "values": [[json_scalar(float(v)) for v in row] for row in sp.to_numpy()],
        }
    sim = per_layer(sub, "similarity")
    has = np.isfinite(sim.to_numpy()).any(axis=1) if sim.shape[1] else np.zeros(0, dtype=bool)
    if has.any():
        data.similarity = {
            "layers": list(sim.columns),
            "trials": [{"id": ids[k], "g": str(groups[idx[k]]),
                        "label": f"{ids[k]} ({data.labels[0]} {vals[idx[k], 0]:.4g})",
                        "values": [json_scalar(float(v)) for v in sim.iloc[k]]}
                       for k in np.flatnonzero(has)],
        }


def _hv_history(data: ReportData, df: pd.DataFrame, vals: np.ndarray, modes: list[str],
                ref: np.ndarray, inc: np.ndarray, groups: np.ndarray,
                names: Sequence[str]) -> None:
    """HV of the front of the first k trials (all rows, by end time), overall and per group."""
    order = np.arange(len(df))
    if "end_time" in df.columns:
        order = df["end_time"].reset_index(drop=True).sort_values(
            kind="stable", na_position="last").index.to_numpy()
    v, eligible, g = vals[order], inc[order], groups[order]
    k = np.arange(1, len(df) + 1)
    hv, _ = hypervolume_history_values(v, modes, ref, eligible)
    data.history["all"] = _thin(k, hv)
    if data.by and len(names) > 1:
        for name in names:
            hv, _ = hypervolume_history_values(v, modes, ref, eligible & (g == name))
            data.history[name] = _thin(k, hv)


def _thin(k: np.ndarray, hv: np.ndarray, limit: int = 2000) -> list[list[float]]:
    """Step points where the HV changes (plus the ends), at most ``limit``."""
    if len(k) == 0:
        return []
    keep = np.r_[True, hv[1:] != hv[:-1]]
    keep[-1] = True
    idx = np.flatnonzero(keep)
    if len(idx) > limit:
        idx = idx[np.linspace(0, len(idx) - 1, limit).astype(int)]
    return [[int(k[i]), float(hv[i])] for i in idx]


def _learning(data: ReportData, df: pd.DataFrame, front: np.ndarray, flagged: np.ndarray,
              status: np.ndarray, groups: np.ndarray) -> None:
    """Per-epoch test accuracy (or loss) of each trial with a ``history``."""
    if "history" not in df.columns:
        return
    cells = df["history"].to_numpy(dtype=object)
    has = np.array([not (v is None or (isinstance(v, float) and np.isnan(v)) or
                         (isinstance(v, str) and v.strip() in ("", "[]", "null")))
                    for v in cells], dtype=bool)
    pool = np.flatnonzero(has)
    pool = pool[priority((front | flagged)[pool], MAX_CURVES)]  # parse only these
    hist = {int(i): history(cells[i]) for i in pool}
    keys = {k for h in hist.values() for e in h for k in e}
    metric = next((m for m in ("test_accuracy", "test_loss", "train_loss") if m in keys), None)
    if metric is None:
        return
    ids = trial_ids(df)
    trials = []
    for i in pool:
        if not hist[int(i)]:
            continue
        pts = [(e.get("epoch", j + 1), json_scalar(e.get(metric)))
               for j, e in enumerate(hist[int(i)])]
        trials.append({"id": ids[i], "g": str(groups[i]), "s": str(status[i]),
                       "f": int(front[i]), "epochs": [json_scalar(x) for x, _ in pts],
                       "y": [y for _, y in pts]})
    if trials:
        data.learning = {"metric": metric, "trials": trials, "total": int(has.sum())}


def _parcoords(data: ReportData, df: pd.DataFrame, params: list[str], cols: list[str],
               res: Results, limit: int) -> None:
    if df.empty:
        return
    pick = priority(np.zeros(len(df), dtype=bool), limit)
    sub = df.iloc[pick]
    dims = []
    for c in [*params, *cols]:
        col = sub[c]
        label = display_name(c, res.aliases)
        if is_numeric(col) or c in cols:
            dims.append({"label": label, "values": [json_scalar(v) for v in num(sub, c)]})
            continue
        codes, names = category_axis(col)
        dims.append({"label": label, "values": codes, "ticktext": names})
    data.parcoords = {"dims": dims, "color": [json_scalar(v) for v in num(sub, cols[0])],
                      "color_label": display_name(cols[0], res.aliases),
                      "shown": len(sub), "total": len(df)}


def _tables(data: ReportData, df: pd.DataFrame, front: np.ndarray, flag_text: np.ndarray,
            status: np.ndarray, objs: Sequence[Objective], by_full: str | None,
            params: list[str], res: Results) -> None:
    cols = list(dict.fromkeys(
        ["trial_id", *([by_full] if by_full else []), *(o.column for o in objs),
         *(c for c in TABLE_COLUMNS if c in df.columns), *params]))
    cols = [c for c in cols if c in df.columns]
    names = [display_name(c, res.aliases) for c in cols]
    first = objs[0]
    key = num(df, first.column)
    key = np.where(np.isfinite(key), -key if first.mode == "max" else key, np.inf)

    fidx = np.flatnonzero(front)
    fidx = fidx[np.argsort(key[fidx], kind="stable")]
    data.table = {"columns": names,
                  "rows": [[json_scalar(df.at[i, c]) for c in cols] for i in fidx]}

    picked = priority(front | (flag_text != ""), MAX_TABLE_ROWS)
    picked = picked[np.lexsort((key[picked], ~front[picked]))]  # front first, then best
    shown = {"trial_id", *([by_full] if by_full else []), *(o.column for o in objs),
             *TABLE_SHOWN, *[p for p in params if p != by_full][:TABLE_SHOWN_PARAMS]}
    data.trials = {
        "columns": ["front", "flag", *names],
        "hidden": [False, False, *(c not in shown for c in cols)],
        "rows": [["yes" if front[i] else "", str(flag_text[i]),
                  *(json_scalar(df.at[i, c]) for c in cols)] for i in picked],
        "front": [bool(front[i]) for i in picked],
        "flagged": [bool(flag_text[i]) for i in picked],
        "status": [str(status[i]) for i in picked],
        "total": len(df),
    }


def write_report(results: str | Path | Sequence[str | Path], out: Path,
                 objectives: Sequence[str | Objective], by: str | None = None,
                 where: str | None = None, statuses: Sequence[str] | None = DONE_STATUSES,
                 ref: Sequence[float] | None = None, png_dir: Path | None = None,
                 title: str | None = None, hide_chance: bool = True) -> ReportData:
    """Build the report from RESULTS and write ``out`` (HTML) and, optionally, PNGs."""
    with Results(results) as res:
        data = build_report(res, objectives, by, where, statuses, ref, title,
                            hide_chance=hide_chance)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data), encoding="utf-8")
    log.info("report written to %s", out)
    if png_dir is not None:
        write_pngs(data, png_dir)
    return data
