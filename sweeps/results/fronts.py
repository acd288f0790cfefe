"""The Pareto front algorithms: non-dominated rows of a value matrix or a DataFrame.

* Row ``p`` is *dominated* iff another row ``q`` is at least as good in every objective and
  strictly better in one. Rows with identical objective values never dominate each other, so
  every duplicate of a non-dominated row is on the front.
* A row whose value is missing (NULL), NaN or infinite in any objective is excluded.

Algorithms (all numpy, no Python loop over rows):

* 2 objectives: lexicographic sort, then a running maximum — O(n log n).
* 3 objectives: sort by the first objective; a row is dominated iff an earlier (distinct) row
  is at least as good in the other two. That 2-D prefix query is answered for all rows at once
  by a bottom-up divide and conquer (one sort per level) — O(n log² n) — after a cheap exact
  pre-filter that drops rows dominated by a few pivot rows (most rows, on real sweeps).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sweeps.results.errors import ResultsError, unknown_column_msg
from sweeps.results.objectives import Objective, parse_objectives


def pareto_mask(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Boolean mask (n,) of non-dominated rows of ``values`` (n, k), k in {1, 2, 3}.

    Rows with a non-finite value are never on the front and never dominate.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(modes):
        raise ValueError(f"values shape {values.shape} does not match {len(modes)} modes")
    n, k = values.shape
    if not 1 <= k <= 3:
        raise ValueError("pareto_mask supports 1 to 3 objectives")
    mask = np.zeros(n, dtype=bool)
    finite = np.isfinite(values).all(axis=1)
    idx = np.flatnonzero(finite) if not finite.all() else np.arange(n)
    if idx.size == 0:
        return mask
    cols = [values[idx, j] if m == "max" else -values[idx, j] for j, m in enumerate(modes)]
    if k == 1:
        mask[idx[cols[0] == cols[0].max()]] = True
        return mask
    sub = np.flatnonzero(_pivot_prefilter(cols))
    if k == 2:
        mask[idx[sub[_front2(cols[0][sub], cols[1][sub])]]] = True
    else:
        mask[idx[sub[_front3(np.column_stack([c[sub] for c in cols]))]]] = True
    return mask


def _front2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Indices of non-dominated points, maximising both a and b. One argsort, no lexsort.

    Sort by a descending; for a group of equal a, point i is dominated iff a group with larger a
    has some b >= b_i, or its own group has some b > b_i. Identical points dominate nothing.
    """
    order = np.argsort(-a)
    a_s, b_s = a[order], b[order]
    starts = np.flatnonzero(np.r_[True, a_s[1:] != a_s[:-1]])
    gmax = np.maximum.reduceat(b_s, starts)
    prev = np.empty_like(gmax)
    prev[0] = -np.inf
    np.maximum.accumulate(gmax[:-1], out=prev[1:])
    gid = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(b_s)]))
    keep = (b_s > prev[gid]) & (b_s >= gmax[gid])
    return order[keep]


def _front3(x: np.ndarray) -> np.ndarray:
    """Indices of non-dominated rows of x (m, 3), maximising all three."""
    order = _lex_desc(x)
    xs = x[order]
    new_run = np.ones(len(xs), dtype=bool)
    new_run[1:] = (xs[1:] != xs[:-1]).any(axis=1)
    firsts = np.flatnonzero(new_run)  # one representative per distinct vector
    u = xs[firsts]
    # u is sorted best-first and distinct: row i is dominated iff an earlier row q has
    # b_q >= b_i and c_q >= c_i (a_q >= a_i by the sort, and q != i).
    keep_u = _prefix_dominance_free(u[:, 1], u[:, 2])
    run_id = np.cumsum(new_run) - 1
    return order[keep_u[run_id]]


def _dense_rank(v: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense ranks (0 = smallest, ties equal) and the number of distinct values."""
    o = np.argsort(v)
    vs = v[o]
    r = np.empty(len(v), dtype=np.int64)
    if len(v) == 0:
        return r, 0
    steps = np.cumsum(np.r_[False, vs[1:] != vs[:-1]])
    r[o] = steps
    return r, int(steps[-1]) + 1


def _lex_desc(x: np.ndarray) -> np.ndarray:
    """Order sorting rows lexicographically descending (np.lexsort is slow on floats)."""
    if len(x) < 50_000:
        return np.lexsort(tuple(-x[:, j] for j in range(x.shape[1] - 1, -1, -1)))
    key = np.zeros(len(x), dtype=np.int64)
    total = 1
    for j in range(x.shape[1]):
        r, m = _dense_rank(x[:, j])
        total *= max(m, 1)
        if total >= 2**62:
            return np.lexsort(tuple(-x[:, j] for j in range(x.shape[1] - 1, -1, -1)))
        key = key * m + r
    return np.argsort(-key)


def _pivot_prefilter(cols: Sequence[np.ndarray]) -> np.ndarray:
    """Exact pre-filter: False for rows dominated by one of a few non-dominated pivots.

    ``cols``: k contiguous columns, maximised. Each pivot maximises a positive weighting of the
    min-max-normalised objectives (ties broken towards the lexicographic best), so it is on the
    front; removing rows it dominates cannot change the front (dominance is transitive). Two
    rounds: k + 1 pivots over all rows, then more over the survivors. A few passes over memory
    per pivot, so this costs a small fraction of a sort and usually leaves a tiny remainder.
    """
    k, m = len(cols), len(cols[0])
    alive = np.ones(m, dtype=bool)
    if m < 4096:
        return alive
    lo = np.array([c.min() for c in cols])
    hi = np.array([c.max() for c in cols])
    span = np.where(hi > lo, hi - lo, 1.0)
    rng = np.random.default_rng(0)
    idx = np.arange(m)
    cur = list(cols)
    for n_piv in (k + 1, 24):
        w = rng.dirichlet(np.ones(k), size=n_piv)
        w[:k] = np.eye(k) * 0.9 + 0.1 / k
        best: set[int] = set()
        for wi in w:
            score = cur[0] * (wi[0] / span[0])
            for j in range(1, k):
                score += cur[j] * (wi[j] / span[j])
            cand = np.flatnonzero(score == score.max())
            tied = np.column_stack([c[cand] for c in cur])
            best.add(int(cand[_lex_desc(tied)[0]]))
        dom = np.zeros(len(idx), dtype=bool)
        for b in sorted(best):
            ge = cur[0] <= cur[0][b]
            eq = cur[0] == cur[0][b]
            for j in range(1, k):
                ge &= cur[j] <= cur[j][b]
                eq &= cur[j] == cur[j][b]
            dom |= ge & ~eq
        alive[idx[dom]] = False
        keep = ~dom
        idx = idx[keep]
        cur = [c[keep] for c in cur]
        if len(idx) < 4096:
            break
    return alive


def _prefix_dominance_free(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """keep[i] = no j < i with b[j] >= b[i] and c[j] >= c[i]; vectorised bottom-up CDQ.

    At level s, positions split into blocks of 2s; the left half of each block answers the
    queries of its right half: within a block sort by b descending (inserts before queries on
    ties), take a running max of c over inserts and compare at each query. Every pair j < i is
    in exactly one such (left, right) split, so there are log2(m) levels of one sort each.
    """
    m = len(b)
    dominated = np.zeros(m, dtype=bool)
    if m < 2:
        return ~dominated
    br, _ = _dense_rank(b)
    cr, _ = _dense_rank(c)
    pos = np.arange(m, dtype=np.int64)
    big = m + 1
    s = 1
    while s < m:
        seg = pos // (2 * s)
        is_query = (pos // s) % 2 == 1
        # sort key: segment, then b descending, then inserts (0) before queries (1); rows with
        # equal keys are interchangeable, so an unstable sort is fine
        key = (seg * big + (big - 1 - br)) * 2 + is_query
        order = np.argsort(key)
        q_sorted = is_query[order]
        vals = np.where(q_sorted, -1, seg[order] * big + cr[order])
        run = np.maximum.accumulate(vals)
        qo = order[q_sorted]
        best = run[q_sorted] - seg[qo] * big  # < 0: no insert in this segment yet
        dominated[qo] |= best >= cr[qo]
        s *= 2
    return ~dominated


def pareto_front(df: pd.DataFrame, objectives: Sequence[str | Objective]) -> pd.DataFrame:
    """Non-dominated rows of ``df`` for 2 or 3 objectives, sorted by the first (best first).

    ``objectives``: ``"column:max"`` strings or :class:`Objective`. Rows are not filtered by
    status here: do that first (``load_results`` keeps completed trials by default).
    """
    objs = parse_objectives(objectives)
    missing = [o.column for o in objs if o.column not in df.columns]
    if missing:
        raise ResultsError(unknown_column_msg(missing[0], list(df.columns)))
    vals = np.column_stack([pd.to_numeric(df[o.column], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan) for o in objs]) if len(df) else np.empty((0, len(objs)))
    mask = pareto_mask(vals, [o.mode for o in objs])
    return sort_front(df[mask], objs)


def sort_front(front: pd.DataFrame, objs: Sequence[Objective]) -> pd.DataFrame:
    cols = [o.column for o in objs]
    asc = [o.mode == "min" for o in objs]
    return front.sort_values(cols, ascending=asc, kind="stable").reset_index(drop=True)


def pareto_front_by(df: pd.DataFrame, objectives: Sequence[str | Objective],
                    by: str) -> pd.DataFrame:
    """One front per value of ``by`` (missing values form their own group)."""
    if by not in df.columns:
        raise ResultsError(unknown_column_msg(by, list(df.columns)))
    parts = [pareto_front(g, objectives) for _, g in df.groupby(by, dropna=False, sort=True)]
    if not parts:
        return df.iloc[0:0]
    return pd.concat(parts, ignore_index=True)
