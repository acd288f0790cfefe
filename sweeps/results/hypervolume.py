"""Hypervolume of a front (2 or 3 objectives, exact) and its history over a sweep.

The hypervolume (HV) of a set of points is the volume of objective space they dominate,
bounded by a reference point that every counted point must beat in all objectives (points that
do not beat it contribute nothing). Larger is better for every mix of max/min objectives.

Reference point: given, or derived by :func:`derive_reference` from the data — the worst value
of each objective over all rows considered (the minimum for ``max`` objectives, the maximum for
``min`` ones), moved outward by ``margin`` (1%) of that objective's range so that the worst
points still add volume. Fronts compared with each other (per group, or over time) must share
one reference point; the CLI and report derive it once from all rows.

History: the HV of the front of the first k trials, k = 1..n, trials ordered by ``end_time``
(ties and missing times keep file order). Every row counts as a trial; only rows with an
included status and finite objectives can change the front. Updates are incremental: a point
dominated by the current front costs one vectorised comparison; only front changes recompute.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sweeps.results.fronts import pareto_mask
from sweeps.results.objectives import Objective, parse_objectives
from sweeps.results.statuses import DONE_STATUSES

log = logging.getLogger(__name__)


def _to_min_space(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    sign = np.array([-1.0 if m == "max" else 1.0 for m in modes])
    return np.asarray(values, dtype=np.float64).reshape(-1, len(modes)) * sign


def derive_reference(values: np.ndarray, modes: Sequence[str], margin: float = 0.01,
                     ) -> np.ndarray:
    """Worst finite value per objective, moved outward by ``margin`` × its range.

    A constant objective (range 0) is padded by ``margin`` × its magnitude (or ``margin`` when
    it is 0). Raises ValueError when there is no row with all objectives finite.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1, len(modes))
    v = v[np.isfinite(v).all(axis=1)]
    if len(v) == 0:
        raise ValueError("no rows with finite objective values to derive a reference point")
    lo, hi = v.min(axis=0), v.max(axis=0)
    ref = np.empty(len(modes))
    for j, mode in enumerate(modes):
        worst = lo[j] if mode == "max" else hi[j]
        span = hi[j] - lo[j]
        pad = margin * (span if span > 0 else (abs(worst) if worst != 0 else 1.0))
        ref[j] = worst - pad if mode == "max" else worst + pad
    return ref


def _hv2_min(y: np.ndarray, r: np.ndarray) -> float:
    """HV of points y (n, 2), minimising, all strictly better than r; any order/duplicates."""
    if len(y) == 0:
        return 0.0
    f = y[pareto_mask(y, ["min", "min"])]
    f = np.unique(f, axis=0)  # sorted by y0 ascending, so y1 descending on a front
    x_next = np.r_[f[1:, 0], r[0]]
    return float(np.sum((x_next - f[:, 0]) * (r[1] - f[:, 1])))


def _hv3_min(y: np.ndarray, r: np.ndarray) -> float:
    """HV of points y (n, 3), minimising, all strictly better than r: slices along the 3rd."""
    if len(y) == 0:
        return 0.0
    f = np.unique(y[pareto_mask(y, ["min", "min", "min"])], axis=0)
    f = f[np.argsort(f[:, 2], kind="stable")]
    z = np.r_[f[:, 2], r[2]]
    total = 0.0
    for i in range(len(f)):
        dz = z[i + 1] - z[i]
        if dz > 0:
            total += dz * _hv2_min(f[: i + 1, :2], r[:2])
    return total


def hypervolume_min(y: np.ndarray, ref: np.ndarray) -> float:
    """Exact HV for minimisation (all objectives), 1 to 3 objectives."""
    y = np.asarray(y, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    y = y.reshape(-1, len(r))
    y = y[np.isfinite(y).all(axis=1) & (y < r).all(axis=1)]
    if len(r) == 1:
        return float(r[0] - y[:, 0].min()) if len(y) else 0.0
    if len(r) == 2:
        return _hv2_min(y, r)
    if len(r) == 3:
        return _hv3_min(y, r)
    raise ValueError("hypervolume supports 1 to 3 objectives")


def hypervolume(values: np.ndarray, modes: Sequence[str],
                ref: Sequence[float] | np.ndarray | None = None) -> float:
    """Exact hypervolume of ``values`` (n, k) with per-column modes ``max``/``min``.

    ``ref`` in the objectives' own units (e.g. ``[0.0, 0.0]`` for accuracy:max, sparsity:max);
    None derives it from ``values`` (see :func:`derive_reference`). Rows with a non-finite value
    or not strictly better than ``ref`` in every objective add nothing.
    """
    modes = list(modes)
    r = derive_reference(values, modes) if ref is None else np.asarray(ref, dtype=np.float64)
    return hypervolume_min(_to_min_space(values, modes), _to_min_space(r, modes)[0])


def hypervolume_history_values(values: np.ndarray, modes: Sequence[str],
                               ref: Sequence[float] | np.ndarray,
                               eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HV and front size after each of the first k rows, k = 1..n (rows in the given order).

    ``eligible``: rows that may join the front (others count as trials but change nothing).
    """
    y = _to_min_space(values, list(modes))
    r = _to_min_space(np.asarray(ref, dtype=np.float64), list(modes))[0]
    n = len(y)
    ok = np.isfinite(y).all(axis=1) & (y < r).all(axis=1)
    if eligible is not None:
        ok &= np.asarray(eligible, dtype=bool)
    hv = np.zeros(n)
    size = np.zeros(n, dtype=np.int64)
    front = np.empty((0, y.shape[1]))
    cur = 0.0
    for i in range(n):
        if ok[i]:
            p = y[i]
            if not (len(front) and (front <= p).all(axis=1).any()):
                front = np.vstack([front[~(p <= front).all(axis=1)], p])
                cur = hypervolume_min(front, r)
        hv[i] = cur
        size[i] = len(front)
    return hv, size


def hypervolume_history(df: pd.DataFrame, objectives: Sequence[str | Objective],
                        ref: Sequence[float] | np.ndarray,
                        statuses: Sequence[str] | None = DONE_STATUSES,
                        order_by: str = "end_time") -> pd.DataFrame:
    """Per trial (ordered by ``order_by`` when present): ``k``, ``trial_id``, ``hypervolume``,
    ``front_size``. All rows count as trials; only ``statuses`` rows can join the front."""
    objs = parse_objectives(objectives)
    if order_by in df.columns:
        df = df.sort_values(order_by, kind="stable", na_position="last")
    vals = np.column_stack([pd.to_numeric(df[o.column], errors="coerce")
                            .to_numpy(dtype=np.float64, na_value=np.nan) for o in objs]) \
        if len(df) else np.empty((0, len(objs)))
    eligible = None
    if statuses is not None and "status" in df.columns:
        eligible = df["status"].isin(list(statuses)).to_numpy()
    hv, size = hypervolume_history_values(vals, [o.mode for o in objs], ref, eligible)
    out = pd.DataFrame({"k": np.arange(1, len(df) + 1), "hypervolume": hv, "front_size": size})
    if "trial_id" in df.columns:
        out.insert(1, "trial_id", df["trial_id"].to_numpy())
    if order_by in df.columns:
        out.insert(2, order_by, df[order_by].to_numpy())
    return out
