"""The report's style: one colour per group (criterion), one per trial status, the
staircase shape of a front, and how numbers read on an axis (:func:`number_label`: 3
significant digits, SI suffixes from 1,000; never a raw float).

Both the plotly page and the matplotlib PNGs take their colours from here, so a criterion has
the same colour in every plot of a report and in its PNGs. Groups are coloured in sorted
order from a colour-blind-safe list (Okabe-Ito, then tab10's remaining hues); statuses have
fixed colours, none of them a group colour (dark grey for ``ok``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

#: Okabe-Ito (minus black and yellow, hard to see on white), then tab10 hues not in it
GROUP_COLORS: tuple[str, ...] = (
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
    "#8c564b", "#7f7f7f", "#bcbd22", "#9467bd", "#17becf", "#2ca02c",
)

STATUS_COLORS: dict[str, str] = {
    "ok": "#4d4d4d",
    "stopped_early": "#ff7f0e",
    "diverged": "#e377c2",
    "doomed": "#7b4173",  # ended before training: no input->output path
    "error": "#d62728",
    "interrupted": "#1f77b4",
}
UNKNOWN_STATUS_COLOR = "#bcbd22"
#: importance bars, one colour per objective (in objective order)
OBJECTIVE_COLORS: tuple[str, ...] = ("#332288", "#88ccee", "#117733")
FRONT_COLOR = "#000000"  # the overall front's staircase
FLAG_COLOR = "#d62728"  # the ring around a flagged trial (chance accuracy / collapsed layer)
DIAGONAL_COLOR = "#888888"  # effective = nominal sparsity (no disconnected weight)


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


SI_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def number_label(v: float, digits: int = 3) -> str:
    """``v`` as a short label: ``digits`` significant digits, SI suffix from 1,000
    (``471.89989675277036`` -> ``"472"``, ``2.5e6`` -> ``"2.5M"``, ``0.00123`` -> ``"0.00123"``)."""
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    r = float(f"{v:.{digits}g}")  # round first: 999,999 reads 1M, not 1e+03k
    for scale, suffix in SI_SUFFIXES:
        if abs(r) >= scale:
            return f"{r / scale:.{digits}g}{suffix}"
    return f"{r:.{digits}g}"


def number_labels(values: Sequence[float], digits: int = 3) -> list[str]:
    """:func:`number_label` of each value, with more digits (up to 12) where ``digits`` would
    give two different values the same label."""
    distinct = len({float(v) for v in values})
    for d in range(digits, 13):
        labels = [number_label(v, d) for v in values]
        if len(set(labels)) == distinct:
            return labels
    return labels


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False,
               outer: bool = False) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten, at most ``n - 1`` of
    them between ``lo`` and ``hi``), whole numbers only when ``integer``: within
    ``[lo, hi]``, or with ``outer`` from the round value at or below ``lo`` to the one at or
    above ``hi`` (an axis range covering the data). ``[lo]`` when the range is empty."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(n - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, math.ceil(step))
    first = (math.floor if outer else math.ceil)(lo / step + (1e-9 if outer else -1e-9))
    last = (math.ceil if outer else math.floor)(hi / step - (1e-9 if outer else -1e-9))
    ticks = [(first + i) * step for i in range(last - first + 1)]
    return [float(f"{t:.12g}") for t in ticks]  # 0.30000000000000004 -> 0.3
