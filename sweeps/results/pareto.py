"""Pareto queries over sweep results: non-dominated sets, filters, DuckDB views.

Definitions used everywhere in prunetune:

* An *objective* is a numeric column and a mode, ``max`` or ``min`` (``test_accuracy:max``).
* Row ``p`` is *dominated* iff another row ``q`` is at least as good in every objective and
  strictly better in one. Rows with identical objective values never dominate each other, so
  every duplicate of a non-dominated row is on the front.
* A row whose value is missing (NULL), NaN or infinite in any objective is excluded.
* Only ``status = 'ok'`` rows take part unless other statuses are asked for: ``error``,
  ``diverged`` and ``stopped_early`` trials did not finish the configuration they describe.

Algorithms (all numpy, no Python loop over rows):

* 2 objectives: lexicographic sort, then a running maximum — O(n log n).
* 3 objectives: sort by the first objective; a row is dominated iff an earlier (distinct) row
  is at least as good in the other two. That 2-D prefix query is answered for all rows at once
  by a bottom-up divide and conquer (one sort per level) — O(n log² n) — after a cheap exact
  pre-filter that drops rows dominated by a few pivot rows (most rows, on real sweeps).

Reading: a RESULTS path is a results directory (its ``trials/*.parquet``), a directory of
``*.parquet`` files, or one Parquet file; several are read as one dataset through DuckDB
``read_parquet([...], union_by_name=true)``. The view ``trials`` holds every column under its
full name plus short aliases (see :func:`short_aliases`), so ``criterion`` works where
``"config.prune.criterion"`` does. A Parquet file that cannot be read is skipped with a warning
naming it (the same policy as :meth:`sweeps.results.store.TrialStore.table`).

Untrusted text (see SECURITY.md): ``--where`` must parse as exactly one SQL condition on the
rows (checked on DuckDB's own parse tree) and is run as the body of a view, never pasted into a
larger statement; ad-hoc queries must be one ``SELECT``. Once the views exist the connection is
locked down: no file access outside the results files, no extension install or autoload, and no
setting can be changed back.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pruning_core.suggest import did_you_mean
from sweeps.results.schema import PER_LAYER

log = logging.getLogger(__name__)

PART_PREFIX = "part-"  # compacted files (sweeps/results/store.py)

Mode = Literal["max", "min"]
DONE_STATUSES: tuple[str, ...] = ("ok",)
ALL_STATUSES: tuple[str, ...] = ("ok", "error", "diverged", "doomed", "stopped_early",
                                 "interrupted")
_ALIAS_PREFIXES = ("config.prune.", "config.")


class ResultsError(ValueError):
    """Bad input to a results query; the message names what is wrong and how to fix it."""


# --------------------------------------------------------------------------- objectives
@dataclass(frozen=True)
class Objective:
    column: str
    mode: Mode = "max"

    def __str__(self) -> str:
        return f"{self.column}:{self.mode}"


def parse_objective(spec: str | Objective) -> Objective:
    """``"test_accuracy:max"`` -> Objective; the mode is required and must be max or min."""
    if isinstance(spec, Objective):
        return spec
    column, sep, mode = spec.strip().rpartition(":")
    mode = mode.strip().lower()
    if not sep or not column.strip():
        raise ResultsError(f"objective {spec!r}: expected COLUMN:MODE, e.g. test_accuracy:max")
    if mode not in ("max", "min"):
        raise ResultsError(f"objective {spec!r}: mode {mode!r} must be 'max' or 'min', "
                           f"e.g. {column.strip()}:max")
    return Objective(column.strip(), mode)  # type: ignore[arg-type]


def parse_objectives(specs: Iterable[str | Objective]) -> list[Objective]:
    objs = [parse_objective(s) for s in specs]
    if not 2 <= len(objs) <= 3:
        raise ResultsError(f"got {len(objs)} objective(s); give 2 or 3, e.g. "
                           "--objective test_accuracy:max --objective sparsity:max")
    cols = [o.column for o in objs]
    if len(set(cols)) != len(cols):
        raise ResultsError(f"objectives repeat a column ({', '.join(cols)}); give distinct ones")
    return objs


def to_max_space(values: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """(n, k) float array with ``min`` columns negated, so larger is better everywhere."""
    sign = np.array([1.0 if m == "max" else -1.0 for m in modes])
    return np.asarray(values, dtype=np.float64) * sign


# --------------------------------------------------------------------------- fronts
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
        raise ResultsError(_unknown_column_msg(missing[0], list(df.columns)))
    vals = np.column_stack([pd.to_numeric(df[o.column], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan) for o in objs]) if len(df) else np.empty((0, len(objs)))
    mask = pareto_mask(vals, [o.mode for o in objs])
    return _sort_front(df[mask], objs)


def _sort_front(front: pd.DataFrame, objs: Sequence[Objective]) -> pd.DataFrame:
    cols = [o.column for o in objs]
    asc = [o.mode == "min" for o in objs]
    return front.sort_values(cols, ascending=asc, kind="stable").reset_index(drop=True)


def pareto_front_by(df: pd.DataFrame, objectives: Sequence[str | Objective],
                    by: str) -> pd.DataFrame:
    """One front per value of ``by`` (missing values form their own group)."""
    if by not in df.columns:
        raise ResultsError(_unknown_column_msg(by, list(df.columns)))
    parts = [pareto_front(g, objectives) for _, g in df.groupby(by, dropna=False, sort=True)]
    if not parts:
        return df.iloc[0:0]
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- reading
def resolve_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """RESULTS arguments -> Parquet file paths or globs for DuckDB; ResultsError if none."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            out.append(str(p))
            continue
        if not p.is_dir():
            raise ResultsError(f"results path {raw}: no such file or directory; give a results "
                               "dir (with trials/), a dir of .parquet files or a .parquet file")
        base = p / "trials" if (p / "trials").is_dir() else p
        if _has_parquet(base):
            out.append(str(base / "*.parquet"))
            continue
        subdirs = sorted({str(f.parent) for f in p.rglob("*.parquet")
                          if not f.name.startswith(".") and "trials_orphaned" not in f.parts})
        if not subdirs:
            raise ResultsError(f"results path {raw}: no .parquet files found (looked in "
                               f"{base}); has the sweep written any trials yet?")
        out.extend(str(Path(d) / "*.parquet") for d in subdirs)
    return out


def _remote_table(uri: str) -> Any:
    """A results URI's trial rows as one Arrow table, read through pyarrow's filesystem (DuckDB
    would need its httpfs extension, which it downloads)."""
    from sweeps.results.store import TrialStore

    try:
        table, bad = TrialStore(uri).readable_table()
    except OSError as exc:
        raise ResultsError(f"results {uri}: cannot read ({_first_line(exc)})") from None
    if bad and table.num_rows == 0:
        raise ResultsError(unreadable_msg([uri], bad))
    for path, why in bad:
        log.warning("skipping unreadable results file %s: %s", path, why)
    if table.num_rows == 0:
        raise ResultsError(f"results {uri}: no trial rows under trials/; has the sweep written "
                           "any trials yet?")
    return table


def _has_parts(sources: Sequence[str]) -> bool:
    """Do these files or globs include compacted ``part-*.parquet`` files?"""
    for src in sources:
        if glob.has_magic(src):
            if glob.glob(os.path.join(os.path.dirname(src), f"{PART_PREFIX}*.parquet")):
                return True
        elif os.path.basename(src).startswith(PART_PREFIX):
            return True
    return False


def _has_parquet(d: Path) -> bool:
    with os.scandir(d) as it:
        return any(e.name.endswith(".parquet") and not e.name.startswith(".") and e.is_file()
                   for e in it)


def sql_string(s: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + s.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def short_aliases(columns: Sequence[str]) -> dict[str, str]:
    """Short names for ``config.*`` columns: alias -> full column name.

    ``config.prune.criterion`` -> ``criterion``; ``config.model.name`` -> ``model.name`` and
    ``model_name``; ``config.prune.allocation.name`` -> ``allocation.name`` and
    ``allocation_name``. An alias is offered only when exactly one column yields it and no real
    column has that name (so ``sparsity`` stays the measured sparsity, and the configured target
    is ``target_sparsity`` or ``"config.prune.sparsity"``).
    """
    real = set(columns)
    cands: dict[str, set[str]] = {}
    for col in columns:
        for prefix in _ALIAS_PREFIXES:
            if col.startswith(prefix) and len(col) > len(prefix):
                rest = col[len(prefix):]
                for alias in {rest, rest.replace(".", "_")}:
                    cands.setdefault(alias, set()).add(col)
    return {a: next(iter(src)) for a, src in sorted(cands.items())
            if len(src) == 1 and a not in real}


def _unknown_column_msg(name: str, columns: Sequence[str]) -> str:
    hint = did_you_mean(name, columns) or \
        "see the columns with: prunetune query RESULTS \"DESCRIBE trials\""
    return f"unknown column {name!r}; {hint}"


# --------------------------------------------------------------------------- SQL guard
#: DuckDB settings that cut a results connection off from everything but the results. Order
#: matters: ``lock_configuration`` last, so no later statement can turn the others back.
LOCKDOWN_SETTINGS: tuple[tuple[str, str], ...] = (
    ("enable_external_access", "false"),
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("lock_configuration", "true"),
)


def lock_down(con: Any, directories: Sequence[str] = (), files: Sequence[str] = ()) -> None:
    """Make ``con`` read-only towards the outside: only ``directories`` / ``files`` (the
    results) can be read by file functions; nothing can be installed, loaded or attached; the
    configuration is locked. Call after the views are created."""
    if directories:
        con.execute("SET allowed_directories = "
                    "[" + ", ".join(sql_string(d) for d in directories) + "]")
    if files:
        con.execute("SET allowed_paths = [" + ", ".join(sql_string(f) for f in files) + "]")
    for name, value in LOCKDOWN_SETTINGS:
        con.execute(f"SET {name} = {value}")


def check_select(con: Any, sql: str, what: str = "query") -> None:
    """ResultsError unless ``sql`` is exactly one SELECT statement (DESCRIBE, SHOW, SUMMARIZE,
    FROM-first and VALUES are SELECTs too). COPY, ATTACH, INSTALL, LOAD, SET, CREATE, PRAGMA
    and several statements separated by ``;`` are refused."""
    import duckdb

    try:
        stmts = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ResultsError(f"SQL error: {_first_line(exc)} (the table is 'trials'; quote "
                           'dotted names: "config.prune.criterion")') from None
    if len(stmts) != 1:
        raise ResultsError(f"{what}: {len(stmts)} statements; give exactly one read-only "
                           "SELECT over trials (no ';'-separated statements)")
    kind = stmts[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ResultsError(f"{what}: {kind.name} statements are refused; results are "
                           "read-only: give one SELECT over trials (no COPY, ATTACH, INSTALL, "
                           "LOAD, SET or CREATE)")


def _ast(con: Any, sql: str) -> dict[str, Any]:
    """DuckDB's parse tree of ``sql`` without source positions."""
    raw = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
    return _strip_locations(json.loads(raw))


def _strip_locations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_locations(v) for k, v in node.items()
                if k not in ("query_location", "query_location_length")}
    if isinstance(node, list):
        return [_strip_locations(v) for v in node]
    return node


def where_view_sql(con: Any, where: str, table: str = "trials") -> str:
    """``SELECT * FROM table WHERE (<where>)`` after checking that ``where`` is exactly one
    condition: the statement must parse to the template's own tree with only the WHERE
    clause differing (so no ``;``, no closing parenthesis that reopens into UNION, GROUP BY,
    ORDER BY or a comment that swallows the rest), and ``NOT (<where>)`` must negate that same
    tree (so no ``a) OR (b``). ResultsError otherwise. The result is run as the body of a view,
    never spliced into a larger statement."""
    import duckdb

    sql = f"SELECT * FROM {table} WHERE (\n{where}\n)"  # newlines end a trailing -- comment
    try:
        stmts = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise ResultsError(f"SQL error in --where: {_first_line(exc)}") from None
    bad = ResultsError(f"--where {where!r}: must be exactly one condition on the rows, e.g. "
                       "--where \"sparsity >= 0.9 AND criterion = 'snip'\"; statements, "
                       "';', UNION, GROUP BY and comments are refused")
    if len(stmts) != 1 or stmts[0].type != duckdb.StatementType.SELECT:
        raise bad
    try:
        got = _ast(con, sql)
        ref = _ast(con, f"SELECT * FROM {table} WHERE (\nTRUE\n)")
    except duckdb.Error as exc:  # json_serialize_sql is built into DuckDB's Python wheels
        raise ResultsError(f"--where: cannot check the condition ({_first_line(exc)}); "
                           "install the duckdb version pinned by prunetune") from None
    try:
        node = got["statements"][0]["node"]
        ref_node = ref["statements"][0]["node"]
    except (KeyError, IndexError, TypeError):
        raise bad from None
    if got.get("error") or len(got["statements"]) != 1 or node.get("where_clause") is None \
            or {**node, "where_clause": None} != {**ref_node, "where_clause": None}:
        raise bad
    # blank text or only a comment leaves "WHERE ()", an empty row that DuckDB refuses only
    # when the rows are read ("Conversion Error ... TUPLE -> BOOLEAN", not naming --where)
    try:
        blank = _ast(con, f"SELECT * FROM {table} WHERE (\n\n)")["statements"][0]["node"]
    except (duckdb.Error, KeyError, IndexError, TypeError):
        blank = None
    if blank is not None and node["where_clause"] == blank.get("where_clause"):
        raise ResultsError(f"--where {where!r}: holds no condition (blank, or only a comment); "
                           "give one, e.g. --where \"sparsity >= 0.9\", or leave --where out")
    # "a) OR (b" passes the template as "(a) OR (b)"; under NOT it becomes "NOT (a) OR (b)",
    # whose top is OR, not the NOT of the same tree: such text is not one bracketed condition
    try:
        negated = _ast(con, f"SELECT * FROM {table} WHERE NOT (\n{where}\n)")
        top = negated["statements"][0]["node"]["where_clause"]
    except (duckdb.Error, KeyError, IndexError, TypeError):
        raise bad from None
    if top.get("type") != "OPERATOR_NOT" or top.get("children") != [node["where_clause"]]:
        raise bad
    return sql


def _is_read_error(exc: BaseException) -> bool:
    """A DuckDB error that may come from reading a damaged file rather than from the SQL (a
    corrupt page can surface as a bare ``duckdb.Error``): worth one check of the files."""
    import duckdb

    return not isinstance(exc, duckdb.ParserException | duckdb.BinderException |
                          duckdb.CatalogException | duckdb.PermissionException |
                          duckdb.ConversionException | duckdb.OutOfRangeException |
                          duckdb.NotImplementedException | duckdb.InterruptException)


def _expand(sources: Sequence[str]) -> list[str]:
    out: list[str] = []
    for src in sources:
        if glob.has_magic(src):
            out.extend(sorted(glob.glob(src)))
        else:
            out.append(src)
    return out


class Results:
    """A DuckDB connection over one or more RESULTS paths.

    Views: ``trials_raw`` (the Parquet columns as written) and ``trials`` (the same plus short
    aliases from :func:`short_aliases`). Nothing is loaded until a query runs.
    """

    def __init__(self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 threads: int | None = None) -> None:
        import duckdb

        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        remote = [str(p) for p in paths if "://" in str(p)]
        local = [p for p in paths if "://" not in str(p)]
        #: the results paths as given (what error lines name)
        self.given = [str(p) for p in paths]
        local_sources = resolve_paths(local) if local else []
        self.sources = [*local_sources, *remote]
        #: absolute local files or globs DuckDB reads; replaced by an explicit list of the
        #: readable files once an unreadable one has been found
        self._local = [os.path.abspath(s) for s in local_sources]
        self._checked = False  # every file read whole once (after a read error)
        #: can a trial's row be there twice (part files, several sources): then keep the newest
        self._may_repeat = len(self.sources) > 1 or bool(remote) or _has_parts(self._local)
        self._where_views: dict[str, str] = {}
        self.con = duckdb.connect()
        # every view binding and query reads the files' footers again: keep them in memory
        self.con.execute("SET parquet_metadata_cache = true")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        for i, uri in enumerate(remote):  # s3://... and other pyarrow filesystem URIs
            self.con.register(f"_remote{i}", _remote_table(uri))
        self._n_remote = len(remote)
        try:
            self._create_views()
        except duckdb.Error as exc:
            if not (_is_read_error(exc) and self._skip_unreadable()):
                raise ResultsError(f"cannot read results {', '.join(map(str, self.sources))}: "
                                   f"{_first_line(exc)}") from exc
            try:
                self._create_views()
            except duckdb.Error as exc2:
                raise ResultsError(f"cannot read results {', '.join(map(str, self.sources))}:"
                                   f" {_first_line(exc2)}") from exc2
        globs = [s for s in self._local if glob.has_magic(s)]
        lock_down(self.con, directories=sorted({os.path.dirname(g) + os.sep for g in globs}),
                  files=[s for s in self._local if not glob.has_magic(s)])

    def _create_views(self) -> None:
        selects = []
        if self._local:
            lst = "[" + ", ".join(sql_string(s) for s in self._local) + "]"
            selects.append(f"SELECT * FROM read_parquet({lst}, union_by_name=true)")
        selects += [f"SELECT * FROM _remote{i}" for i in range(self._n_remote)]
        if not selects:
            raise ResultsError(f"results {', '.join(map(str, self.sources))}: no readable "
                               ".parquet files left")
        self.con.execute("CREATE OR REPLACE VIEW _files AS " + " UNION ALL BY NAME ".join(selects))
        stored = dict(self.con.execute("SELECT column_name, column_type FROM "
                                       "(DESCRIBE _files)").fetchall())
        self.con.execute("CREATE OR REPLACE VIEW trials_raw AS " + self._rows_sql(stored))
        self.raw_columns: list[str] = [
            r[0] for r in self.con.execute("DESCRIBE trials_raw").fetchall()]
        self.aliases = short_aliases(self.raw_columns)
        extra = "".join(f", {quote_ident(full)} AS {quote_ident(a)}"
                        for a, full in self.aliases.items())
        self.con.execute(f"CREATE OR REPLACE VIEW trials AS SELECT *{extra} FROM trials_raw")
        self.columns = [*self.raw_columns, *self.aliases]

    def _rows_sql(self, stored: dict[str, str]) -> str:
        """The body of ``trials_raw``: one row per trial (the newest ``recorded_at``, when the
        files can hold a trial twice: part files, several sources) and each per-layer map
        (``layer_sparsity``) also as one ``layer_sparsity.<layer>`` column per layer."""
        body = "SELECT * FROM _files"
        if self._may_repeat and "trial_id" in stored and "recorded_at" in stored:
            key = "sweep, trial_id" if "sweep" in stored else "trial_id"
            body += (f" QUALIFY row_number() OVER (PARTITION BY {key} "
                     "ORDER BY recorded_at DESC NULLS LAST) = 1")
        replace, add = [], []
        maps = [g for g in PER_LAYER if stored.get(g, "").startswith("MAP(")]
        found: Sequence[Any] = ()
        if maps:  # every map's layer names in one pass over the files
            lists = ", ".join(f"list_distinct(flatten(list(map_keys({quote_ident(g)}))))"
                              for g in maps)
            found = self.con.execute(f"SELECT {lists} FROM _files").fetchone() or ()
        for group, keys in zip(maps, found, strict=False):
            for layer in sorted(k for k in keys or [] if k is not None):
                col = f"{group}.{layer}"
                value = f"map_extract({quote_ident(group)}, {sql_string(layer)})[1]"
                if col in stored:  # old files' flattened column next to new files' map
                    replace.append(f"coalesce({quote_ident(col)}, {value}) AS {quote_ident(col)}")
                else:
                    add.append(f"{value} AS {quote_ident(col)}")
        sel = "*" + (f" REPLACE ({', '.join(replace)})" if replace else "")
        return f"SELECT {sel}{''.join(', ' + a for a in add)} FROM ({body})"

    def _skip_unreadable(self) -> bool:
        """Drop unreadable local Parquet files (warning naming each); True if any was dropped.
        When no file at all is readable (and no remote results remain), ResultsError: one line
        naming the results and how many files were unreadable, and no warning per file.

        Runs only after DuckDB failed to read the files (the fast path never pays for it), at
        most once, and reads every file whole, so a file damaged anywhere (footer or pages) is
        found: from then on the connection reads an explicit list of the readable files. A file
        damaged only inside its pages is noticed when a query reads the damaged part (a query
        of other columns, or ``count(*)``, does not touch it)."""
        import pyarrow.parquet as pq

        if self._checked or not self._local:
            return False
        self._checked = True
        files, good = _expand(self._local), []
        bad: list[tuple[str, str]] = []
        for path in files:
            try:
                pq.read_table(path)
            except Exception as exc:  # any failure at all means an unreadable file
                bad.append((path, _first_line(exc)))
                continue
            good.append(path)
        if bad and not good and not self._n_remote:
            raise ResultsError(unreadable_msg(self.given, bad))
        for path, why in bad:
            log.warning("skipping unreadable results file %s: %s", path, why)
        self._local = good
        return bool(bad)

    def _run(self, sql: str) -> Any:
        """Arrow table of ``sql``; skips corrupt Parquet files found while reading (once)."""
        import duckdb

        try:
            return self.con.sql(sql).to_arrow_table()
        except duckdb.Error as exc:
            if not (_is_read_error(exc) and self._skip_unreadable()):
                raise
        self._create_views()
        return self.con.sql(sql).to_arrow_table()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers
    def resolve(self, name: str) -> str:
        """A column or alias name -> the full column name; ResultsError naming near matches."""
        if name in self.raw_columns:
            return name
        if name in self.aliases:
            return self.aliases[name]
        raise ResultsError(_unknown_column_msg(name, self.columns))

    def query(self, sql: str) -> pd.DataFrame:
        """Run one read-only SELECT (``FROM trials``) and return a DataFrame; ResultsError on a
        SQL error or on any other kind of statement (COPY, ATTACH, INSTALL, SET, ...)."""
        import duckdb

        check_select(self.con, sql)
        try:
            return self._run(sql).to_pandas()
        except duckdb.Error as exc:
            raise ResultsError(f"SQL error: {_first_line(exc)} (the table is 'trials'; quote "
                               'dotted names: "config.prune.criterion")') from exc

    def source(self, where: str | None) -> str:
        """The relation holding the rows that pass ``where``: ``trials`` or a view over it.

        ``where`` is checked to be one condition (:func:`where_view_sql`) and becomes the body
        of its own view, so it is never spliced into another statement."""
        import duckdb

        if not where:
            return "trials"
        if where not in self._where_views:
            sql = where_view_sql(self.con, where)
            name = f"_where{len(self._where_views)}"
            try:
                self.con.execute(f"CREATE TEMP VIEW {name} AS {sql}")
            except duckdb.Error as exc:
                raise ResultsError(f"SQL error in --where: {_first_line(exc)}") from None
            self._where_views[where] = name
        return self._where_views[where]

    def _from(self, where: str | None, statuses: Sequence[str] | None,
              extra: str | None = None) -> str:
        """`` FROM <rows passing where> WHERE <status filter> AND <extra>``."""
        conds = []
        if statuses is not None and "status" in self.raw_columns:
            conds.append(f"status IN ({', '.join(sql_string(s) for s in statuses)})")
        if extra:
            conds.append(extra)
        return f" FROM {self.source(where)}" + ((" WHERE " + " AND ".join(conds))
                                                if conds else "")

    def load(self, where: str | None = None,
             statuses: Sequence[str] | None = DONE_STATUSES,
             columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows (full column names plus aliases) passing ``where`` and the status filter."""
        sel = ", ".join(quote_ident(c) for c in columns) if columns else "*"
        return self.query(f"SELECT {sel}{self._from(where, statuses)}")

    def numeric(self, columns: Sequence[str], where: str | None = None,
                statuses: Sequence[str] | None = DONE_STATUSES,
                extra: Sequence[str] = ()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(n, k) float64 matrix of ``columns`` (NULL -> NaN) and the ``extra`` columns."""
        import duckdb

        cols = [f"CAST({quote_ident(self.resolve(c))} AS DOUBLE)" for c in columns]
        ext = [quote_ident(self.resolve(c)) for c in extra]
        sql = f"SELECT {', '.join([*cols, *ext])}{self._from(where, statuses)}"
        try:
            tbl = self._run(sql)
        except duckdb.Error as exc:
            raise ResultsError(f"SQL error in --where: {_first_line(exc)}") from exc
        k = len(columns)
        if tbl.num_rows == 0:
            mat = np.empty((0, k))
        else:
            mat = np.column_stack([tbl.column(j).to_numpy(zero_copy_only=False)
                                   .astype(np.float64, copy=False) for j in range(k)])
        ex = {c: tbl.column(k + j).to_numpy(zero_copy_only=False) for j, c in enumerate(extra)}
        return mat, ex

    def front(self, objectives: Sequence[str | Objective], where: str | None = None,
              by: str | None = None, statuses: Sequence[str] | None = DONE_STATUSES,
              columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The front's rows, sorted by the first objective (best first); one front per ``by``.

        Reads only the objective (and ``by``) columns of the rows passing the filters, finds the
        front in numpy, then fetches the front's rows: all columns, or only ``columns`` (plus
        objectives and ``by``) — much faster on wide, large datasets.
        """
        objs = parse_objectives(objectives)
        full = [self.resolve(o.column) for o in objs]
        objs = [Objective(f, o.mode) for f, o in zip(full, objs, strict=True)]
        by_full = self.resolve(by) if by else None
        vals, ex = self.numeric(full, where, statuses, extra=[by_full] if by_full else [])
        modes = [o.mode for o in objs]
        if by_full is None:
            mask = pareto_mask(vals, modes)
        else:
            mask = np.zeros(len(vals), dtype=bool)
            codes, _ = pd.factorize(pd.Series(ex[by_full], dtype=object), use_na_sentinel=False)
            for g in np.unique(codes):
                sel = np.flatnonzero(codes == g)
                mask[sel[pareto_mask(vals[sel], modes)]] = True
        wanted = list(self.raw_columns)
        if columns is not None:
            wanted = list(dict.fromkeys([*(self.resolve(c) for c in columns), *full,
                                         *([by_full] if by_full else [])]))
        sel_sql = ", ".join(quote_ident(c) for c in wanted)
        fvals = vals[mask]
        if len(fvals) == 0:
            rows = self.query(f"SELECT {sel_sql} FROM trials WHERE false")
        else:
            import pyarrow as pa

            # the front is exactly the rows whose objective vector is a front vector: fetch
            # candidates by the first objective (a pushed-down filter), match the rest here
            self.con.register("_front_keys", pa.table({"k": np.unique(fvals[:, 0])}))
            try:
                cond = f"CAST({quote_ident(full[0])} AS DOUBLE) IN (SELECT k FROM _front_keys)"
                rows = self.query(f"SELECT {sel_sql}{self._from(where, statuses, cond)}")
            finally:
                self.con.unregister("_front_keys")
            rows = _match_front(rows, full, by_full, fvals,
                                ex[by_full][mask] if by_full else None)
        if by_full:
            return rows.sort_values([by_full, *full],
                                    ascending=[True, *[o.mode == "min" for o in objs]],
                                    kind="stable", na_position="last").reset_index(drop=True)
        return _sort_front(rows, objs)


def _match_front(rows: pd.DataFrame, cols: Sequence[str], by: str | None, fvals: np.ndarray,
                 fby: np.ndarray | None) -> pd.DataFrame:
    """Keep rows whose (by, objective values) equal those of a front row."""
    keys = pd.DataFrame(fvals, columns=[f"_k{j}" for j in range(len(cols))])
    cand = pd.DataFrame({f"_k{j}": pd.to_numeric(rows[c], errors="coerce").astype(np.float64)
                         for j, c in enumerate(cols)})
    if by is not None and fby is not None:
        keys["_kby"] = pd.Series(fby, dtype=object).astype(str).to_numpy()
        cand["_kby"] = rows[by].astype(object).astype(str).to_numpy()
    keys = keys.drop_duplicates()
    hit = cand.merge(keys.assign(_hit=True), how="left", on=list(keys.columns))["_hit"]
    return rows[hit.fillna(False).to_numpy(dtype=bool)]


def unreadable_msg(sources: Sequence[str], bad: Sequence[tuple[str, str]]) -> str:
    """The one error line for results whose every file is unreadable: the results, how many
    files, the first file and why."""
    n = len(bad)
    files = "its one results file is" if n == 1 else f"all {n} results files are"
    path, why = bad[0]
    return (f"results {', '.join(map(str, sources))}: nothing readable: {files} unreadable "
            f"(damaged or not Parquet; {'' if n == 1 else 'first: '}{path}: {why}); point at "
            "results written by prunetune sweep")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_results(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 where: str | None = None,
                 statuses: Sequence[str] | None = DONE_STATUSES) -> pd.DataFrame:
    """All rows of one or more RESULTS paths as a DataFrame (full names plus short aliases).

    ``statuses``: which trial statuses to keep (default completed ``ok`` trials only; ``None``
    keeps everything). ``where``: a DuckDB SQL condition, short names allowed.
    """
    with Results(paths) as res:
        return res.load(where, statuses)


def query(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
          sql: str) -> pd.DataFrame:
    """Ad-hoc SQL over the view ``trials`` (all statuses)."""
    with Results(paths) as res:
        return res.query(sql)


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def display_name(col: str, aliases: dict[str, str] | None = None) -> str:
    """Shortest alias of a column for display (``config.prune.criterion`` -> ``criterion``)."""
    if aliases:
        short = [a for a, full in aliases.items() if full == col and _IDENT.match(a)]
        if short:
            return min(short, key=len)
    return col


def parse_ref(text: str | None, k: int) -> list[float] | None:
    """``"0.0,1.0"`` -> [0.0, 1.0]; ResultsError unless there are exactly k finite numbers."""
    if text is None:
        return None
    try:
        ref = [float(x) for x in text.split(",")]
    except ValueError:
        raise ResultsError(f"--ref {text!r}: expected {k} comma-separated numbers, "
                           "e.g. --ref 0.0,0.0") from None
    if len(ref) != k:
        raise ResultsError(f"--ref {text!r}: {len(ref)} number(s) for {k} objectives; "
                           "give one per objective, in --objective order")
    if not all(math.isfinite(x) for x in ref):
        raise ResultsError(f"--ref {text!r}: every number must be finite (not nan or inf, and "
                           "within float range); give finite values, e.g. --ref 0.0,0.0")
    return ref

