"""The report's style: one colour per group (criterion), one per trial status, and the
staircase shape of a front.

Both the plotly page and the matplotlib PNGs take their colours from here, so a criterion has
the same colour in every plot of a report and in its PNGs. Groups are coloured in sorted
order from a colour-blind-safe list (Okabe-Ito, then tab10's remaining hues); statuses have
fixed colours, none of them a group colour (dark grey for ``ok``).
"""

from __future__ import annotations

from collections.abc import Iterable

#: Okabe-Ito (minus black and yellow, hard to see on white), then tab10 hues not in it
GROUP_COLORS: tuple[str, ...] = (
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
    "#8c564b", "#7f7f7f", "#bcbd22", "#9467bd", "#17becf", "#2ca02c",
)

STATUS_COLORS: dict[str, str] = {
    "ok": "#4d4d4d",
    "stopped_early": "#ff7f0e",
    "diverged": "#e377c2",
    "error": "#d62728",
    "interrupted": "#1f77b4",
}
UNKNOWN_STATUS_COLOR = "#bcbd22"
#: importance bars, one colour per objective (in objective order)
OBJECTIVE_COLORS: tuple[str, ...] = ("#332288", "#88ccee", "#117733")
FRONT_COLOR = "#000000"  # the overall front's staircase
FLAG_COLOR = "#d62728"  # the ring around a flagged trial (chance accuracy / collapsed layer)


def group_colors(groups: Iterable[str]) -> dict[str, str]:
    """``{group: "#rrggbb"}``: the groups in sorted order take the palette in turn (it
    repeats after 12 groups)."""
    names = sorted(set(groups))
    return {g: GROUP_COLORS[i % len(GROUP_COLORS)] for i, g in enumerate(names)}


def status_color(status: str) -> str:
    return STATUS_COLORS.get(status, UNKNOWN_STATUS_COLOR)


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """``"#0072b2"`` -> ``(0, 114, 178)``."""
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def staircase_shape(x_mode: str) -> str:
    """Plotly ``line_shape`` of a 2-D front's staircase (points sorted by x ascending).

    The boundary of the region a front dominates: with x maximised, what a point at x can
    reach is set by the next point to its right, so the line drops (or rises) first and then
    runs right: ``"vh"``. With x minimised it runs right first: ``"hv"``.
    """
    return "vh" if x_mode == "max" else "hv"


#: plotly line_shape -> matplotlib drawstyle drawing the same staircase
MPL_DRAWSTYLE = {"vh": "steps-pre", "hv": "steps-post"}
