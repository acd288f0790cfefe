"""Non-dominated (Pareto) rows of a results table, for the end-of-sweep summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def dominates(a: Sequence[float], b: Sequence[float], modes: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and better in one."""
    better = False
    for x, y, mode in zip(a, b, modes, strict=True):
        if mode == "min":
            x, y = -x, -y
        if x < y:
            return False
        better = better or x > y
    return better


def pareto_rows(rows: list[dict[str, Any]], metrics: Sequence[str],
                modes: Sequence[str]) -> list[dict[str, Any]]:
    """Rows with finite values for every metric that no other such row dominates.

    Sorted by the first objective, best first. O(n^2): fine for the thousands of rows a sweep has.
    """
    ok = []
    for r in rows:
        vals = [r.get(m) for m in metrics]
        if all(isinstance(v, int | float) and math.isfinite(v) for v in vals):
            ok.append((r, [float(v) for v in vals]))  # type: ignore[arg-type]
    front = [r for r, v in ok if not any(dominates(w, v, modes) for _, w in ok)]
    sign = -1.0 if modes[0] == "max" else 1.0
    return sorted(front, key=lambda r: sign * float(r[metrics[0]]))
