"""``prunetune report``: one self-contained HTML page (and PNGs) about a sweep's results.

The page embeds its data as JSON and draws inline SVG with a small vanilla-JS renderer
(``report_assets.py``): no network, no plotting library. Sections: the front scatter (hover a
point for its trial, criterion, schedule, steps and metrics), per-group fronts, accuracy against
sparsity, per-layer sparsity of the front's trials (heatmap), hypervolume against trial count,
and a sortable table of the front. ``write_pngs`` draws the main plots with matplotlib (Agg) for
papers. When the JS has drawn everything it sets ``data-rendered="1"`` on ``<body>``.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .hypervolume import derive_reference, hypervolume, hypervolume_history_values
from .jsonable import json_scalar
from .pareto import (
    DONE_STATUSES,
    Objective,
    Results,
    display_name,
    pareto_mask,
    parse_objectives,
)
from .report_assets import CSS, JS

log = logging.getLogger(__name__)

MAX_POINTS = 5000  # dominated points drawn at most (a sample); front points are always drawn
HOVER_COLUMNS = ("trial_id", "status", "config.prune.criterion", "config.prune.schedule",
                 "config.prune.steps", "config.prune.allocation.name", "config.prune.timing.name",
                 "config.model.name", "test_accuracy", "sparsity", "target_sparsity",
                 "params_kept", "flops", "n_collapsed", "epochs")
TABLE_COLUMNS = (*HOVER_COLUMNS, "test_loss", "train_accuracy", "prune_time_s",
                 "train_time_s", "end_time")


@dataclass
class ReportData:
    """Everything the page shows; ``to_json`` is what the page embeds."""

    title: str
    objectives: list[Objective]
    labels: list[str]
    ref: list[float]
    by: str | None
    n_rows: int
    n_included: int
    points: list[dict[str, Any]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    group_fronts: dict[str, list[list[float]]] = field(default_factory=dict)
    hypervolumes: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    curve_axes: list[str] = field(default_factory=list)
    heatmap: dict[str, Any] = field(default_factory=dict)
    history: dict[str, list[list[float]]] = field(default_factory=dict)
    table: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "objectives": [{"column": o.column, "label": lab, "mode": o.mode}
                           for o, lab in zip(self.objectives, self.labels, strict=True)],
            "ref": self.ref, "by": self.by, "n_rows": self.n_rows,
            "n_included": self.n_included, "points": self.points, "groups": self.groups,
            "group_fronts": self.group_fronts, "hypervolumes": self.hypervolumes,
            "curves": self.curves, "curve_axes": self.curve_axes, "heatmap": self.heatmap,
            "history": self.history, "table": self.table,
        }


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def build_report(res: Results, objectives: Sequence[str | Objective], by: str | None = None,
                 where: str | None = None, statuses: Sequence[str] | None = DONE_STATUSES,
                 ref: Sequence[float] | None = None, title: str | None = None,
                 max_points: int = MAX_POINTS) -> ReportData:
    """Collect the report's data from a :class:`Results` (reads all rows passing ``where``)."""
    objs = parse_objectives(objectives)
    objs = [Objective(res.resolve(o.column), o.mode) for o in objs]
    cols = [o.column for o in objs]
    modes = [o.mode for o in objs]
    if by is None and "config.prune.criterion" in res.raw_columns:
        by = "config.prune.criterion"
    by_full = res.resolve(by) if by else None
    everything = res.load(where, statuses=None, columns=res.raw_columns)
    n_rows = len(everything)
    if statuses is not None and "status" in everything.columns:
        inc = everything["status"].isin(list(statuses)).to_numpy()
    else:
        inc = np.ones(n_rows, dtype=bool)
    df = everything[inc].reset_index(drop=True)
    vals = np.column_stack([_num(df, c) for c in cols]) if len(df) else np.empty((0, len(objs)))
    finite = np.isfinite(vals).all(axis=1)
    if not finite.any():
        raise ValueError("no completed trial has finite values for "
                         + ", ".join(str(o) for o in objs))
    ref_arr = np.asarray(ref, dtype=np.float64) if ref is not None else \
        derive_reference(vals, modes)
    labels = [display_name(c, res.aliases) for c in cols]
    groups_arr = (df[by_full].astype(object).where(df[by_full].notna(), "(none)").astype(str)
                  .to_numpy() if by_full else np.full(len(df), "all", dtype=object))
    front = pareto_mask(vals, modes)
    gfront = np.zeros(len(df), dtype=bool)
    groups = sorted(set(groups_arr.tolist()))
    data = ReportData(title=title or _default_title(df), objectives=objs, labels=labels,
                      ref=[float(x) for x in ref_arr],
                      by=display_name(by_full, res.aliases) if by_full else None,
                      n_rows=n_rows, n_included=int(finite.sum()), groups=groups)
    data.hypervolumes["all"] = hypervolume(vals[front], modes, ref_arr)
    for g in groups:
        sel = np.flatnonzero((groups_arr == g) & finite)
        m = pareto_mask(vals[sel], modes)
        gfront[sel[m]] = True
        fv = vals[sel[m]]
        order = np.argsort(fv[:, 1] if modes[1] == "min" else -fv[:, 1], kind="stable")
        data.group_fronts[g] = fv[order].tolist()
        data.hypervolumes[g] = hypervolume(fv, modes, ref_arr)

    # points: every front row plus a sample of the rest
    rest = np.flatnonzero(finite & ~front & ~gfront)
    if len(rest) > max_points:
        rest = np.sort(np.random.default_rng(0).choice(rest, max_points, replace=False))
    shown = np.r_[np.flatnonzero(front | gfront), rest]
    hover = [c for c in HOVER_COLUMNS if c in df.columns and c not in cols]
    for i in shown:
        p: dict[str, Any] = {"v": [float(x) for x in vals[i]], "g": str(groups_arr[i]),
                             "f": int(front[i]), "gf": int(gfront[i])}
        p["h"] = {display_name(c, res.aliases): json_scalar(df.at[i, c]) for c in hover}
        data.points.append(p)

    _curves(data, df, groups_arr, res)
    _heatmap(data, df, front, vals, objs, res)
    _history(data, everything, objs, ref_arr, statuses, by_full, groups)
    _table(data, df, front, objs, by_full, res)
    return data


def _default_title(df: pd.DataFrame) -> str:
    if "sweep" in df.columns and df["sweep"].notna().any():
        names = sorted(set(df["sweep"].dropna().astype(str)))
        return "prunetune report: " + ", ".join(names[:3]) + ("…" if len(names) > 3 else "")
    return "prunetune report"


def _curves(data: ReportData, df: pd.DataFrame, groups: np.ndarray, res: Results) -> None:
    """Best test accuracy per sparsity level, per group (target sparsity when recorded)."""
    if "test_accuracy" not in df.columns:
        return
    xcol = next((c for c in ("target_sparsity", "config.prune.sparsity", "sparsity")
                 if c in df.columns and df[c].notna().any()), None)
    if xcol is None:
        return
    x = _num(df, xcol)
    y = _num(df, "test_accuracy")
    ok = np.isfinite(x) & np.isfinite(y)
    levels = np.round(x, 4)
    if len(np.unique(levels[ok])) > 40:  # continuous: 30 equal-width bins, bin centres
        lo, hi = np.nanmin(x[ok]), np.nanmax(x[ok])
        width = (hi - lo) / 30 or 1.0
        levels = lo + (np.floor((x - lo) / width).clip(0, 29) + 0.5) * width
    frame = pd.DataFrame({"g": groups[ok], "x": levels[ok], "y": y[ok]})
    for g, part in frame.groupby("g", sort=True):
        best = part.groupby("x", sort=True)["y"].agg(["max", "median", "count"])
        data.curves[str(g)] = [[float(a), float(b), float(c), int(d)]
                               for a, (b, c, d) in zip(best.index, best.to_numpy(), strict=True)]
    data.curve_axes = [display_name(xcol, res.aliases), "test_accuracy"]


def _heatmap(data: ReportData, df: pd.DataFrame, front: np.ndarray, vals: np.ndarray,
             objs: Sequence[Objective], res: Results) -> None:
    layers = [c for c in df.columns if c.startswith("layer_sparsity.")]
    idx = np.flatnonzero(front)
    if not layers or not len(idx):
        return
    o0 = objs[0]
    idx = idx[np.argsort(-vals[idx, 0] if o0.mode == "max" else vals[idx, 0], kind="stable")]
    ids = df["trial_id"].astype(str).to_numpy()[idx] if "trial_id" in df.columns else \
        np.array([str(i) for i in idx])
    grid = np.column_stack([_num(df, c)[idx] for c in layers])
    data.heatmap = {
        "rows": ids.tolist(), "cols": [c[len("layer_sparsity."):] for c in layers],
        "row_labels": [f"{i}  ({data.labels[0]} {vals[j, 0]:.4g})"
                       for i, j in zip(ids, idx, strict=True)],
        "values": [[json_scalar(float(v)) for v in row] for row in grid],
    }


def _history(data: ReportData, everything: pd.DataFrame, objs: Sequence[Objective],
             ref: np.ndarray, statuses: Sequence[str] | None, by_full: str | None,
             groups: Sequence[str]) -> None:
    """HV of the front of the first k trials (all rows, by end time), overall and per group."""
    df = everything
    if "end_time" in df.columns:
        df = df.sort_values("end_time", kind="stable", na_position="last")
    vals = np.column_stack([_num(df, o.column) for o in objs]) if len(df) else \
        np.empty((0, len(objs)))
    modes = [o.mode for o in objs]
    eligible = np.ones(len(df), dtype=bool)
    if statuses is not None and "status" in df.columns:
        eligible = df["status"].isin(list(statuses)).to_numpy()
    k = np.arange(1, len(df) + 1)
    hv, _ = hypervolume_history_values(vals, modes, ref, eligible)
    data.history["all"] = _thin(k, hv)
    if by_full and len(groups) > 1:
        gcol = df[by_full].astype(object).where(df[by_full].notna(), "(none)").astype(str)
        for g in groups:
            hv, _ = hypervolume_history_values(vals, modes, ref,
                                               eligible & (gcol == g).to_numpy())
            data.history[g] = _thin(k, hv)


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


def _table(data: ReportData, df: pd.DataFrame, front: np.ndarray, objs: Sequence[Objective],
           by_full: str | None, res: Results) -> None:
    cols = list(dict.fromkeys(
        ["trial_id", *([by_full] if by_full else []), *(o.column for o in objs),
         *(c for c in TABLE_COLUMNS if c in df.columns)]))
    cols = [c for c in cols if c in df.columns]
    rows = df.loc[front, cols]
    rows = rows.sort_values(objs[0].column, ascending=objs[0].mode == "min", kind="stable")
    data.table = {"columns": [display_name(c, res.aliases) for c in cols],
                  "rows": [[json_scalar(v) for v in r] for r in rows.itertuples(index=False)]}


# --------------------------------------------------------------------------- HTML
def render_html(data: ReportData) -> str:
    payload = json.dumps(data.to_json(), allow_nan=False, separators=(",", ":"))
    payload = payload.replace("</", "<\\/")
    t = html.escape(data.title)
    objs = ", ".join(f"{lab} ({o.mode})" for o, lab in zip(data.objectives, data.labels,
                                                            strict=True))
    hv = ", ".join(f"{html.escape(g)}: {v:.6g}" for g, v in data.hypervolumes.items())
    ref = ", ".join(f"{x:.6g}" for x in data.ref)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{CSS}</style></head>
<body data-rendered="0">
<h1>{t}</h1>
<p class="meta">{data.n_included} completed trials with all objectives (of {data.n_rows} rows);
objectives: {html.escape(objs)}; reference point ({ref}); hypervolume {hv}.</p>
<section><h2>Pareto front</h2><div class="plot" id="front-scatter"></div></section>
<section><h2>Fronts per {html.escape(data.by or "group")}</h2>
<div class="plot" id="group-fronts"></div></section>
<section><h2>Accuracy against sparsity</h2><div class="plot" id="acc-sparsity"></div></section>
<section><h2>Per-layer sparsity of the front's trials</h2>
<div class="plot" id="layer-heatmap"></div></section>
<section><h2>Hypervolume against trial count</h2>
<div class="plot" id="hv-history"></div></section>
<section><h2>Front trials</h2><p class="meta">Click a column header to sort.</p>
<div id="front-table"></div></section>
<div id="tooltip" hidden></div>
<script type="application/json" id="report-data">{payload}</script>
<script>{JS}</script>
</body></html>
"""


# --------------------------------------------------------------------------- PNG
def write_pngs(data: ReportData, out_dir: Path) -> list[Path]:
    """The main plots as PNG (matplotlib, Agg): front, group fronts, curves, HV, heatmap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    lx, ly = data.labels[1], data.labels[0]
    colors = plt.get_cmap("tab10")

    def save(fig: Any, name: str) -> None:
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=150)
        plt.close(fig)
        written.append(path)

    pts = np.array([p["v"] for p in data.points]) if data.points else np.empty((0, 2))
    fr = np.array([p["f"] for p in data.points], dtype=bool)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(pts[~fr, 1], pts[~fr, 0], s=8, c="#bbbbbb", label="dominated")
    f = pts[fr]
    f = f[np.argsort(f[:, 1])]
    ax.plot(f[:, 1], f[:, 0], "o-", ms=4, c="#d62728", label="front")
    ax.set_xlabel(lx)
    ax.set_ylabel(ly)
    ax.legend()
    save(fig, "front.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (g, fv) in enumerate(data.group_fronts.items()):
        a = np.array(fv)
        if len(a):
            a = a[np.argsort(a[:, 1])]
            ax.plot(a[:, 1], a[:, 0], "o-", ms=3, c=colors(i % 10), label=g)
    ax.set_xlabel(lx)
    ax.set_ylabel(ly)
    ax.legend(fontsize=8)
    save(fig, "fronts_by_group.png")

    if data.curves:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for i, (g, c) in enumerate(data.curves.items()):
            a = np.array(c)
            ax.plot(a[:, 0], a[:, 1], "o-", ms=3, c=colors(i % 10), label=g)
        ax.set_xlabel(data.curve_axes[0])
        ax.set_ylabel(f"best {data.curve_axes[1]}")
        ax.legend(fontsize=8)
        save(fig, "accuracy_vs_sparsity.png")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (g, h) in enumerate(data.history.items()):
        a = np.array(h)
        if len(a):
            ax.step(a[:, 0], a[:, 1], where="post", c="k" if g == "all" else colors(i % 10),
                    lw=2 if g == "all" else 1, label=g)
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume")
    ax.legend(fontsize=8)
    save(fig, "hypervolume.png")

    if data.heatmap:
        grid = np.array([[np.nan if v is None else v for v in r]
                         for r in data.heatmap["values"]], dtype=float)
        fig, ax = plt.subplots(figsize=(max(5, 0.35 * grid.shape[1] + 3),
                                        max(3, 0.25 * grid.shape[0] + 1.5)))
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(grid.shape[1]), data.heatmap["cols"], rotation=90, fontsize=7)
        ax.set_yticks(range(grid.shape[0]), data.heatmap["rows"], fontsize=7)
        fig.colorbar(im, ax=ax, label="sparsity")
        save(fig, "layer_sparsity.png")
    return written


def write_report(results: str | Path | Sequence[str | Path], out: Path,
                 objectives: Sequence[str | Objective], by: str | None = None,
                 where: str | None = None, statuses: Sequence[str] | None = DONE_STATUSES,
                 ref: Sequence[float] | None = None, png_dir: Path | None = None,
                 title: str | None = None) -> ReportData:
    """Build the report from RESULTS and write ``out`` (HTML) and, optionally, PNGs."""
    with Results(results) as res:
        data = build_report(res, objectives, by, where, statuses, ref, title)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(data), encoding="utf-8")
    log.info("report written to %s", out)
    if png_dir is not None:
        write_pngs(data, png_dir)
    return data
