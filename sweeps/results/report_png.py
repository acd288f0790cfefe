"""The report's main figures as PNG, for papers (matplotlib, Agg; no browser needed).

Same data, colours (``report_style``) and staircase fronts as the HTML page. Written:
``front.png``, ``fronts_by_group.png``, ``hypervolume.png`` always; ``accuracy_vs_sparsity.png``,
``importance.png``, ``learning_curves.png``, ``layer_sparsity.png``, ``layer_similarity.png``,
``adv_accuracy_vs_sparsity.png``, ``gap_vs_sparsity.png`` and ``effective_vs_nominal.png``
when the rows have what they show. Parallel coordinates stay interactive-only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeps.results.report_style import (
    DIAGONAL_COLOR,
    FLAG_COLOR,
    FRONT_COLOR,
    MPL_DRAWSTYLE,
    OBJECTIVE_COLORS,
    staircase_shape,
    status_color,
)

if TYPE_CHECKING:
    from sweeps.results.report_data import ReportData

log = logging.getLogger(__name__)


def _front_axes(data: ReportData, ax: Any, ix: int, iy: int) -> None:
    for s in data.status_counts:
        pts = np.array([p["v"] for p in data.points if p["s"] == s]).reshape(-1, len(data.labels))
        ax.scatter(pts[:, ix], pts[:, iy], s=12, c=status_color(s), label=s,
                   linewidths=0)
    fr = np.array(sorted((p["v"] for p in data.points if p["f"]), key=lambda v: v[ix]))
    if len(fr):
        if len(data.objectives) == 2:
            style = MPL_DRAWSTYLE[staircase_shape(data.objectives[ix].mode)]
            ax.plot(fr[:, ix], fr[:, iy], drawstyle=style, c=FRONT_COLOR, lw=1.3)
        ax.scatter(fr[:, ix], fr[:, iy], s=45, facecolors="none", edgecolors=FRONT_COLOR,
                   linewidths=1.1, label="Pareto front")
    fl = np.array([p["v"] for p in data.points if p["x"]]).reshape(-1, len(data.labels))
    if len(fl):
        ax.scatter(fl[:, ix], fl[:, iy], s=60, marker="x", c=FLAG_COLOR, linewidths=1.4,
                   label="flagged")
    ax.set_xlabel(f"{data.labels[ix]} ({data.objectives[ix].mode})")
    ax.set_ylabel(f"{data.labels[iy]} ({data.objectives[iy].mode})")


#: one figure: ``(data, pyplot, colour of a group) -> figure``, or None when the rows lack it
Drawer = Callable[["ReportData", Any, Callable[[str], str]], Any]


def _labelled(fig: Any, ax: Any, xlabel: str, ylabel: str) -> Any:
    """``fig`` with its axes labelled and a legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return fig


def _trial_lines(ax: Any, trials: list[dict[str, Any]], values: str,
                 xs: Callable[[dict[str, Any]], Any], color: Callable[[str], str],
                 *fmt: str, **style: Any) -> None:
    """One line per trial (its ``values``, None drawn as a gap), coloured by its group, one
    legend entry per group."""
    seen: set[str] = set()
    for t in trials:
        y = np.array([np.nan if v is None else v for v in t[values]], dtype=float)
        ax.plot(xs(t), y, *fmt, c=color(t["g"]), label=None if t["g"] in seen else t["g"],
                **style)
        seen.add(t["g"])


def _front_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    k = len(data.objectives)
    pairs = [(1, 0)] if k == 2 else [(1, 0), (2, 0), (2, 1)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 4.5), squeeze=False)
    for ax, (ix, iy) in zip(axes[0], pairs, strict=True):
        _front_axes(data, ax, ix, iy)
    axes[0][0].legend(fontsize=8)
    return fig


def _group_fronts_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    k = len(data.objectives)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    style = MPL_DRAWSTYLE[staircase_shape(data.objectives[1].mode)]
    for g, fv in data.group_fronts.items():
        a = np.array(sorted(fv, key=lambda v: v[1])).reshape(-1, k)
        if len(a):
            ax.plot(a[:, 1], a[:, 0], marker="o", ms=4, c=color(g), lw=1.6,
                    ls="-" if k == 2 else "none", drawstyle=style,
                    label=f"{g} (HV {data.hypervolumes.get(g, 0.0):.4g})")
    return _labelled(fig, ax, f"{data.labels[1]} ({data.objectives[1].mode})",
                     f"{data.labels[0]} ({data.objectives[0].mode})")


def _staircases_png(curves: dict[str, list[list[Any]]], plt: Any, color: Callable[[str], str],
                    xlabel: str, ylabel: str) -> Any:
    """Best value at >= each sparsity, one staircase per group (as on the page)."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for g, c in curves.items():
        a = np.array([r[:2] for r in c], dtype=float).reshape(-1, 2)
        ax.plot(a[:, 0], a[:, 1], "o-", ms=3, c=color(g), label=g,
                drawstyle=MPL_DRAWSTYLE[staircase_shape("max")])
    return _labelled(fig, ax, xlabel, ylabel)


def _accuracy_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    if not data.curves:
        return None
    return _staircases_png(data.curves, plt, color, data.curve_axes[0],
                           f"best {data.curve_axes[1]} at ≥ this sparsity")


def _hypervolume_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for g, h in data.history.items():
        a = np.array(h)
        if len(a):
            ax.step(a[:, 0], a[:, 1], where="post", c=FRONT_COLOR if g == "all" else color(g),
                    lw=2 if g == "all" else 1, label=g)
    return _labelled(fig, ax, "trials (by end time)", "hypervolume")


def _importance_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    if not data.importance:
        return None
    first = next(iter(data.importance.values()))
    order = sorted(first, key=first.get)
    n_obj = len(data.importance)
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.5 + 0.35 * len(order) * n_obj)))
    height = 0.8 / n_obj
    for j, (obj, imp) in enumerate(data.importance.items()):
        ax.barh(np.arange(len(order)) + (j - (n_obj - 1) / 2) * height,
                [imp.get(p, 0.0) for p in order], height=height, label=obj,
                color=OBJECTIVE_COLORS[j % len(OBJECTIVE_COLORS)])
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("importance (fANOVA, sums to 1 per objective)")
    ax.legend(fontsize=8)
    return fig


def _learning_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    if not data.learning:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    _trial_lines(ax, data.learning["trials"], "y", lambda t: t["epochs"], color, lw=0.9)
    return _labelled(fig, ax, "epoch", data.learning["metric"])


def _layer_sparsity_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    if not data.heatmap:
        return None
    grid = np.array([[np.nan if v is None else v for v in r]
                     for r in data.heatmap["values"]], dtype=float)
    fig, ax = plt.subplots(figsize=(max(5, 0.35 * grid.shape[1] + 3),
                                    max(3, 0.25 * grid.shape[0] + 1.5)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(grid.shape[1]), data.heatmap["cols"], rotation=90, fontsize=7)
    ax.set_yticks(range(grid.shape[0]), data.heatmap["rows"], fontsize=7)
    fig.colorbar(im, ax=ax, label="sparsity")
    return fig


def _layer_similarity_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    if not data.similarity:
        return None
    sim = data.similarity
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(sim["layers"]) + 3), 4.5))
    x = np.arange(len(sim["layers"]))
    _trial_lines(ax, sim["trials"], "values", lambda t: x, color, "o-", ms=3, lw=1.2)
    ax.set_xticks(x, sim["layers"], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("similarity to the dense network")
    ax.legend(fontsize=8)
    return fig


def _adv_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    if not data.adv_curves:
        return None
    return _staircases_png(data.adv_curves, plt, color, "sparsity",
                           "best adv_accuracy at ≥ this sparsity")


def _gap_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    if not data.gap:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for g, rows in data.gap.items():
        a = np.array([r[:2] for r in rows], dtype=float).reshape(-1, 2)
        ax.scatter(a[:, 0], a[:, 1], s=14, c=color(g), label=g, linewidths=0)
    ax.axhline(0, c=DIAGONAL_COLOR, lw=0.8, ls=":")
    return _labelled(fig, ax, "sparsity", "gap_accuracy (train − test accuracy)")


def _effective_png(data: ReportData, plt: Any, color: Callable[[str], str]) -> Any:
    """Effective against nominal sparsity (diagonal drawn, doomed trials as ✕)."""
    if not data.effective:
        return None
    eff = data.effective
    fig, ax = plt.subplots(figsize=(6, 4.5))
    rows = [r for g in eff["groups"].values() for r in g] + eff["doomed"]
    lo = min(min(r[0], r[1]) for r in rows)
    ax.plot([lo, 1.0], [lo, 1.0], c=DIAGONAL_COLOR, lw=1, ls="--",
            label="effective = nominal")
    for g, pts in eff["groups"].items():
        a = np.array([r[:2] for r in pts], dtype=float).reshape(-1, 2)
        ax.scatter(a[:, 0], a[:, 1], s=14, c=color(g), label=g, linewidths=0)
    if eff["doomed"]:
        a = np.array([r[:2] for r in eff["doomed"]], dtype=float).reshape(-1, 2)
        ax.scatter(a[:, 0], a[:, 1], s=40, marker="x", c=status_color("doomed"),
                   label="doomed")
    return _labelled(fig, ax, "sparsity (nominal)", "effective_sparsity")


#: the PNGs, in the order they are written: file name -> drawer
PNGS: tuple[tuple[str, Drawer], ...] = (
    ("front.png", _front_png),
    ("fronts_by_group.png", _group_fronts_png),
    ("accuracy_vs_sparsity.png", _accuracy_png),
    ("hypervolume.png", _hypervolume_png),
    ("importance.png", _importance_png),
    ("learning_curves.png", _learning_png),
    ("layer_sparsity.png", _layer_sparsity_png),
    ("layer_similarity.png", _layer_similarity_png),
    ("adv_accuracy_vs_sparsity.png", _adv_png),
    ("gap_vs_sparsity.png", _gap_png),
    ("effective_vs_nominal.png", _effective_png),
)


def write_pngs(data: ReportData, out_dir: Path) -> list[Path]:
    """Write the PNGs into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def color(g: str) -> str:
        return data.colors.get(g, FRONT_COLOR)

    for name, draw in PNGS:
        fig = draw(data, plt, color)
        if fig is None:
            continue
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=150)
        plt.close(fig)
        written.append(path)
    log.info("%d PNGs written to %s", len(written), out_dir)
    return written
