"""The report's plotly figures, built from a :class:`~sweeps.results.report.ReportData`.

:func:`figures` returns them in page order, keyed by the id of the ``<div>`` each is drawn
into. Group colours and status colours come from ``report_style`` (the PNGs use the same).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from sweeps.results.report_style import (
    DIAGONAL_COLOR,
    FLAG_COLOR,
    FRONT_COLOR,
    OBJECTIVE_COLORS,
    nice_ticks,
    number_labels,
    staircase_shape,
    status_color,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from sweeps.results.report_data import ReportData

HEIGHT = 440
PARCOORDS_TICKS = 6  # about this many ticks on a numeric parallel-coordinates axis
ADV_OFF_NOTE = ("no trial has an adversarial accuracy: set metrics.adversarial in the config "
                "(an attack and its budget; see docs/robustness.md) to measure adv_accuracy")
LEARNING_NOTE = ("One curve per trial, named by its trial id. Hover a curve to highlight it; "
                 "click a trial in the legend to hide it, double-click to show it alone.")


def chance_note(data: ReportData) -> str:
    """What the fronts do with trials at chance accuracy (stated on the page)."""
    if not data.n_chance:
        return ""
    if data.hide_chance:
        return (f"{data.n_chance} trial(s) at chance accuracy are left out of the fronts and "
                "hypervolumes (the default; --show-chance keeps them); the scatter still "
                "shows them, flagged.")
    return (f"{data.n_chance} trial(s) at chance accuracy are kept in the fronts "
            "(--show-chance, or every trial is at chance; the default, --hide-chance, leaves "
            "them out).")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def point_text(data: ReportData, p: dict[str, Any]) -> str:
    """Hover text of a trial: its group, objectives, details, front and flag."""
    lines = [f"trial {p['id']}"]
    if data.by:
        lines.append(f"{data.by}: {p['g']}")
    lines += [f"{lab}: {_fmt(v)}" for lab, v in zip(data.labels, p["v"], strict=True)]
    lines += [f"{k}: {_fmt(v)}" for k, v in p["h"].items()
              if k not in ("trial_id", data.by) and k not in data.labels]
    if p["f"]:
        lines.append("<b>on the Pareto front</b>")
    if p["x"]:
        lines.append(f"<b>flagged: {p['x']}</b>")
    return "<br>".join(lines)


def _layout(fig: go.Figure, **kw: Any) -> go.Figure:
    kw.setdefault("height", HEIGHT)
    kw.setdefault("margin", {"l": 60, "r": 20, "t": 30, "b": 50})
    fig.update_layout(template="plotly_white", legend={"itemsizing": "constant"},
                      showlegend=True, **kw)
    return fig


def _axis_title(data: ReportData, j: int) -> str:
    return f"{data.labels[j]} ({data.objectives[j].mode})"


def front_figure(data: ReportData) -> go.Figure:
    """Every trial (any status, coloured by status), the front of the included statuses as a
    staircase (2 objectives) and a ring around flagged trials. 3 objectives: the three pairs
    side by side, front trials ringed (a projection of a 3-D front is not a staircase)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    k = len(data.objectives)
    pairs = [(1, 0)] if k == 2 else [(1, 0), (2, 0), (2, 1)]
    fig = make_subplots(rows=1, cols=len(pairs), horizontal_spacing=0.08)
    for col, (ix, iy) in enumerate(pairs, start=1):
        first = col == 1
        for s, counts in data.status_counts.items():
            pts = [p for p in data.points if p["s"] == s]
            fig.add_trace(go.Scatter(
                x=[p["v"][ix] for p in pts], y=[p["v"][iy] for p in pts], mode="markers",
                name=f"{s} ({counts['plotted']} of {counts['rows']} plotted)",
                legendgroup=s, showlegend=first,
                marker={"color": status_color(s), "size": 7, "opacity": 0.8},
                text=[point_text(data, p) for p in pts],
                hovertemplate="%{text}<extra></extra>"), row=1, col=col)
        fr = sorted((p for p in data.points if p["f"]), key=lambda p: p["v"][ix])
        fig.add_trace(go.Scatter(
            x=[p["v"][ix] for p in fr], y=[p["v"][iy] for p in fr],
            mode="lines+markers" if k == 2 else "markers", name="Pareto front",
            legendgroup="front", showlegend=first,
            line={"color": FRONT_COLOR, "width": 1.6,
                  "shape": staircase_shape(data.objectives[ix].mode)},
            marker={"color": "rgba(0,0,0,0)", "size": 12,
                    "line": {"color": FRONT_COLOR, "width": 1.5}},
            text=[point_text(data, p) for p in fr], hovertemplate="%{text}<extra></extra>"),
            row=1, col=col)
        flagged = [p for p in data.points if p["x"]]
        if flagged:
            fig.add_trace(go.Scatter(
                x=[p["v"][ix] for p in flagged], y=[p["v"][iy] for p in flagged],
                mode="markers", name="flagged: chance accuracy / collapsed layer",
                legendgroup="flagged", showlegend=first,
                marker={"symbol": "x-thin-open", "size": 14, "color": FLAG_COLOR,
                        "line": {"color": FLAG_COLOR, "width": 2}},
                text=[point_text(data, p) for p in flagged],
                hovertemplate="%{text}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=_axis_title(data, ix), row=1, col=col)
        fig.update_yaxes(title_text=_axis_title(data, iy), row=1, col=col)
    return _layout(fig, height=HEIGHT if k == 2 else 420)


def group_fronts_figure(data: ReportData) -> go.Figure:
    """One front per group, in the group's colour; staircases for 2 objectives."""
    import plotly.graph_objects as go

    k = len(data.objectives)
    fig = go.Figure()
    for g, fv in data.group_fronts.items():
        pts = sorted(fv, key=lambda v: v[1])
        fig.add_trace(go.Scatter(
            x=[v[1] for v in pts], y=[v[0] for v in pts],
            mode="lines+markers" if k == 2 else "markers",
            name=f"{g} (HV {data.hypervolumes.get(g, 0.0):.4g})",
            line={"color": data.colors[g], "width": 2,
                  "shape": staircase_shape(data.objectives[1].mode)},
            marker={"color": data.colors[g], "size": 7},
            text=[g] * len(pts),
            hovertemplate=(f"%{{text}}<br>{data.labels[1]}: %{{x:.6g}}<br>"
                           f"{data.labels[0]}: %{{y:.6g}}<extra></extra>")))
    fig.update_xaxes(title_text=_axis_title(data, 1))
    fig.update_yaxes(title_text=_axis_title(data, 0))
    return _layout(fig)


def curves_figure(data: ReportData) -> go.Figure:
    """Best test accuracy at achieved sparsity >= x, per group: a staircase through the trials
    that set it (never a straight line between two trials: no trial reached what is between)."""
    return _best_figure(data, data.curves, "test_accuracy")


def adv_figure(data: ReportData) -> go.Figure:
    """Best adversarial accuracy at achieved sparsity >= x, per group: a staircase."""
    return _best_figure(data, data.adv_curves, "adv_accuracy")


def _best_figure(data: ReportData, curves: dict[str, list[list[Any]]], metric: str
                 ) -> go.Figure:
    import plotly.graph_objects as go

    x_name = data.curve_axes[0] if data.curve_axes else "sparsity"
    fig = go.Figure()
    for g, rows in curves.items():
        fig.add_trace(go.Scatter(
            x=[r[0] for r in rows], y=[r[1] for r in rows], mode="lines+markers", name=g,
            line={"color": data.colors.get(g, FRONT_COLOR), "shape": staircase_shape("max")},
            marker={"size": 7}, customdata=[r[2] for r in rows],
            hovertemplate=(f"{g}: trial %{{customdata}}<br>{x_name}: %{{x:.4g}}"
                           f"<br>{metric}: %{{y:.4g}}<extra></extra>")))
    fig.update_xaxes(title_text=x_name)
    fig.update_yaxes(title_text=f"best {metric} at ≥ this sparsity")
    return _layout(fig)


def gap_figure(data: ReportData) -> go.Figure:
    """Generalisation gap (train - test accuracy) against achieved sparsity, one marker per
    trial in its group's colour; hover names the trial."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for g, rows in data.gap.items():
        fig.add_trace(go.Scatter(
            x=[r[0] for r in rows], y=[r[1] for r in rows], mode="markers", name=g,
            marker={"color": data.colors.get(g, FRONT_COLOR), "size": 7, "opacity": 0.8},
            customdata=[r[2] for r in rows],
            hovertemplate=(f"trial %{{customdata}} ({g})<br>sparsity: %{{x:.4g}}<br>"
                           "gap_accuracy: %{y:.4g}<extra></extra>")))
    fig.add_hline(y=0, line={"color": DIAGONAL_COLOR, "width": 1, "dash": "dot"})
    fig.update_xaxes(title_text="sparsity")
    fig.update_yaxes(title_text="gap_accuracy (train − test accuracy)")
    return _layout(fig)


def _effective_trace(name: str, rows: list[list[Any]], marker: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    return go.Scatter(
        x=[r[0] for r in rows], y=[r[1] for r in rows], mode="markers", name=name,
        marker=marker, customdata=[[r[2], _fmt(r[3]), _fmt(r[4])] for r in rows],
        hovertemplate=(f"trial %{{customdata[0]}} ({name})<br>sparsity: %{{x:.4g}}<br>"
                       "effective_sparsity: %{y:.4g}<br>disconnected weights: "
                       "%{customdata[1]}<br>dead units: %{customdata[2]}<extra></extra>"))


def effective_figure(data: ReportData) -> go.Figure:
    """Effective against nominal (achieved) sparsity, per group, the doomed trials apart, and
    the diagonal: a point above it has kept weights on no input->output path."""
    import plotly.graph_objects as go

    eff = data.effective
    rows = [r for g in eff["groups"].values() for r in g] + eff["doomed"]
    lo = min(min(r[0], r[1]) for r in rows)
    fig = go.Figure(go.Scatter(
        x=[lo, 1.0], y=[lo, 1.0], mode="lines", name="effective = nominal",
        line={"color": DIAGONAL_COLOR, "width": 1.2, "dash": "dash"}, hoverinfo="skip"))
    for g, pts in eff["groups"].items():
        fig.add_trace(_effective_trace(g, pts, {"color": data.colors.get(g, FRONT_COLOR),
                                                "size": 7, "opacity": 0.8}))
    if eff["doomed"]:
        fig.add_trace(_effective_trace("doomed", eff["doomed"], {
            "color": status_color("doomed"), "size": 10, "symbol": "x"}))
    fig.update_xaxes(title_text="sparsity (nominal: weights pruned)")
    fig.update_yaxes(title_text="effective_sparsity (also weights on no path)")
    return _layout(fig)


def _numeric_ticks(values: list[Any], outer: bool = True) -> dict[str, Any]:
    """Round tick values and short labels (``report_style.number_labels``) for a numeric
    axis, so plotly never prints a raw float, and (``outer``) the axis range from a round
    value below the data to one above it; nothing when there is no finite value."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {}
    ticks = nice_ticks(min(finite), max(finite), PARCOORDS_TICKS,
                       integer=all(v.is_integer() for v in finite), outer=outer)
    out: dict[str, Any] = {"tickvals": ticks, "ticktext": number_labels(ticks)}
    if outer and len(ticks) > 1:
        out["range"] = [ticks[0], ticks[-1]]
    return out


def parcoords_figure(data: ReportData) -> go.Figure:
    """Parallel coordinates over the searched parameters and the objectives; every tick is a
    short label (categories from the data, numbers at round values)."""
    import plotly.graph_objects as go

    pc = data.parcoords
    dims = []
    for d in pc["dims"]:
        dim: dict[str, Any] = {"label": d["label"], "values": d["values"]}
        if "ticktext" in d:
            dim.update(tickvals=list(range(len(d["ticktext"]))), ticktext=d["ticktext"])
        else:
            dim.update(_numeric_ticks(d["values"]))
        dims.append(dim)
    bar = {"title": {"text": pc["color_label"]}, **_numeric_ticks(pc["color"], outer=False)}
    fig = go.Figure(go.Parcoords(
        dimensions=dims, name="trials", labelangle=0,
        line={"color": pc["color"], "colorscale": "Viridis", "showscale": True,
              "colorbar": bar}))
    return _layout(fig, height=480, margin={"l": 80, "r": 80, "t": 60, "b": 40})


def importance_figure(data: ReportData) -> go.Figure:
    """fANOVA importance of each searched parameter, one bar series per objective."""
    import plotly.graph_objects as go

    first = next(iter(data.importance.values()))
    order = sorted(first, key=first.get)  # plotly draws the first bar at the bottom
    fig = go.Figure()
    for j, (obj, imp) in enumerate(data.importance.items()):
        fig.add_trace(go.Bar(
            y=order, x=[imp.get(p, 0.0) for p in order], orientation="h", name=obj,
            marker={"color": OBJECTIVE_COLORS[j % len(OBJECTIVE_COLORS)]},
            text=[f"{imp.get(p, 0.0):.3f}" for p in order], textposition="auto",
            hovertemplate=f"{obj}<br>%{{y}}: %{{x:.3f}}<extra></extra>"))
    fig.update_xaxes(title_text="importance (fANOVA, sums to 1 per objective)", range=[0, 1])
    return _layout(fig, barmode="group", height=max(260, 60 + 40 * len(order) * len(
        data.importance)))


def learning_figure(data: ReportData) -> go.Figure:
    """Per-epoch curves, one trace per trial, named by its trial id (hover, legend) and
    coloured by its group; the legend groups the trials under their group. Clicking a trial
    in the legend hides it, double-clicking shows it alone; the page highlights the curve under
    the mouse (``report_html``)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    titled: set[str] = set()
    trials = sorted(data.learning["trials"], key=lambda t: (t["g"] not in data.colors, t["g"]))
    for t in trials:
        g = t["g"]
        label = f"trial {t['id']} ({g}; {t['s']}{', front' if t['f'] else ''})"
        fig.add_trace(go.Scatter(
            x=t["epochs"], y=t["y"], mode="lines", name=str(t["id"]), legendgroup=g,
            legendgrouptitle={"text": g} if g not in titled else None,
            line={"color": data.colors.get(g, FRONT_COLOR), "width": 1.2}, opacity=0.7,
            hovertemplate=f"{label}<br>epoch %{{x}}: %{{y:.4g}}<extra></extra>"))
        titled.add(g)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text=data.learning["metric"])
    fig = _layout(fig)
    fig.update_layout(legend={"groupclick": "toggleitem", "title": {"text": "trial"}},
                      hovermode="closest")
    return fig


def heatmap_figure(data: ReportData) -> go.Figure:
    """Per-layer sparsity of the front's trials; layers in the network's order."""
    import plotly.graph_objects as go

    h = data.heatmap
    fig = go.Figure(go.Heatmap(
        z=h["values"], x=h["cols"], y=h["row_labels"], colorscale="Viridis", zmin=0, zmax=1,
        colorbar={"title": {"text": "sparsity"}},
        hovertemplate="%{y}<br>%{x}<br>sparsity %{z:.4g}<extra></extra>"))
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=h["cols"])
    fig.update_yaxes(autorange="reversed", type="category")
    return _layout(fig, height=max(300, 120 + 18 * len(h["rows"])))


def similarity_figure(data: ReportData) -> go.Figure:
    """Per-layer similarity to the dense reference of each front trial (group colours)."""
    import plotly.graph_objects as go

    sim = data.similarity
    fig = go.Figure()
    shown: set[str] = set()
    for t in sim["trials"]:
        fig.add_trace(go.Scatter(
            x=sim["layers"], y=t["values"], mode="lines+markers", name=t["label"],
            legendgroup=t["g"], line={"color": data.colors.get(t["g"], FRONT_COLOR)},
            hovertemplate=f"{t['label']}<br>%{{x}}: %{{y:.4g}}<extra></extra>"))
        shown.add(t["g"])
    fig.update_xaxes(title_text="layer", type="category")
    fig.update_yaxes(title_text="similarity to the dense network")
    return _layout(fig)


def hv_figure(data: ReportData) -> go.Figure:
    """Hypervolume against trial count, overall (black) and per group; steps."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for g, rows in data.history.items():
        fig.add_trace(go.Scatter(
            x=[r[0] for r in rows], y=[r[1] for r in rows], mode="lines", name=g,
            line={"shape": "hv", "color": FRONT_COLOR if g == "all" else
                  data.colors.get(g, FRONT_COLOR), "width": 2.4 if g == "all" else 1.4},
            hovertemplate=f"{g}<br>%{{x}} trials: HV %{{y:.6g}}<extra></extra>"))
    fig.update_xaxes(title_text="trials (by end time)")
    fig.update_yaxes(title_text="hypervolume", rangemode="tozero")
    return _layout(fig)


def figures(data: ReportData) -> dict[str, tuple[str, go.Figure | None, str]]:
    """``{div id: (section title, figure or None, note)}`` in page order; a None figure has
    nothing to draw and its note says why."""
    out: dict[str, tuple[str, go.Figure | None, str]] = {}
    out["front-scatter"] = ("Every trial and the Pareto front", front_figure(data),
                            chance_note(data))
    out["group-fronts"] = (f"Fronts per {data.by or 'group'}", group_fronts_figure(data),
                           chance_note(data))
    out["acc-sparsity"] = ("Best accuracy against sparsity",
                           curves_figure(data) if data.curves else None,
                           ("Each step is a trial: the best test accuracy of any trial at "
                            "this achieved sparsity or sparser. " + chance_note(data)).strip()
                           if data.curves else "no test_accuracy / sparsity columns")
    out.update(robustness_figures(data))
    out["parcoords"] = ("Parallel coordinates: searched parameters and objectives",
                        parcoords_figure(data) if data.parcoords else None,
                        "" if data.parcoords else "no trials")
    out["importance"] = ("Parameter importance per objective",
                         importance_figure(data) if data.importance else None,
                         data.importance_note or "")
    out["learning-curves"] = ("Learning curves",
                              learning_figure(data) if data.learning else None,
                              LEARNING_NOTE if data.learning else
                              "no history column with epochs")
    out["layer-heatmap"] = ("Per-layer sparsity of the front's trials",
                            heatmap_figure(data) if data.heatmap else None,
                            "" if data.heatmap else "no per-layer sparsity recorded")
    out["layer-similarity"] = ("Per-layer similarity of the front's trials to the dense "
                               "network", similarity_figure(data) if data.similarity else None,
                               "" if data.similarity else "no similarity recorded "
                               "(metrics.similarity in the space)")
    out["hv-history"] = ("Hypervolume against trial count", hv_figure(data), "")
    return out


def robustness_figures(data: ReportData) -> dict[str, tuple[str, go.Figure | None, str]]:
    """Adversarial accuracy, generalisation gap, effective sparsity (``figures``' entries)."""
    eff = data.effective
    derived = (f" For {data.gap_derived} trial(s) without a recorded gap_accuracy it is "
               "train_accuracy − test_accuracy." if data.gap_derived else "")
    return {
        "adv-sparsity": ("Adversarial accuracy against sparsity",
                         adv_figure(data) if data.adv_curves else None,
                         ("Each step is a trial: the best adversarial accuracy (adv_accuracy) "
                          "of any trial at this achieved sparsity or sparser. "
                          + chance_note(data)).strip() if data.adv_curves else ADV_OFF_NOTE),
        "gap-sparsity": ("Generalisation gap against sparsity",
                         gap_figure(data) if data.gap else None,
                         ("One point per trial: train accuracy − test accuracy (above 0: "
                          "the network fits its training set better than it generalises)."
                          + derived) if data.gap else
                         "no gap_accuracy (nor train_accuracy and test_accuracy) recorded"),
        "effective-sparsity": ("Effective against nominal sparsity",
                               effective_figure(data) if eff else None,
                               (f"{eff['above']} trial(s) above the diagonal: their kept "
                                "weights include some on no input→output path, which count "
                                "as removed in effective_sparsity. Doomed trials are marked ✕."
                                ) if eff else "no effective_sparsity recorded (results "
                               "written before effective sparsity was measured)"),
    }
