"""The results reader: a DuckDB connection over one or more RESULTS paths (:class:`Results`),
with the views ``trials_raw`` and ``trials``, the status and ``--where`` filters, and the
Pareto front read from it.

Reading: a RESULTS path is a results directory (its ``trials/*.parquet``), a directory of
``*.parquet`` files, or one Parquet file (:mod:`sweeps.results.sources`); several are read as
one dataset through DuckDB ``read_parquet([...], union_by_name=true)``. The view ``trials``
holds every column under its full name plus short aliases (:func:`sweeps.results.aliases.
short_aliases`), so ``criterion`` works where ``"config.prune.criterion"`` does. A Parquet file
that cannot be read is skipped with a warning naming it (the same policy as
:meth:`sweeps.results.store.TrialStore.table`). Untrusted text goes through
:mod:`sweeps.results.sql_sandbox`.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sweeps.results.aliases import short_aliases
from sweeps.results.errors import ResultsError, first_line, unknown_column_msg, unreadable_msg
from sweeps.results.fronts import pareto_mask, sort_front
from sweeps.results.objectives import Objective, parse_objectives
from sweeps.results.schema import PER_LAYER
from sweeps.results.sources import expand_globs, has_parts, remote_table, resolve_paths
from sweeps.results.sql_sandbox import (
    check_select,
    is_read_error,
    lock_down,
    quote_ident,
    sql_string,
    where_view_sql,
)
from sweeps.results.statuses import DONE_STATUSES

log = logging.getLogger(__name__)


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
        self._may_repeat = len(self.sources) > 1 or bool(remote) or has_parts(self._local)
        self._where_views: dict[str, str] = {}
        self.con = duckdb.connect()
        # every view binding and query reads the files' footers again: keep them in memory
        self.con.execute("SET parquet_metadata_cache = true")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        for i, uri in enumerate(remote):  # s3://... and other pyarrow filesystem URIs
            self.con.register(f"_remote{i}", remote_table(uri))
        self._n_remote = len(remote)
        try:
            self._create_views()
        except duckdb.Error as exc:
            if not (is_read_error(exc) and self._skip_unreadable()):
                raise ResultsError(f"cannot read results {', '.join(map(str, self.sources))}: "
                                   f"{first_line(exc)}") from exc
            try:
                self._create_views()
            except duckdb.Error as exc2:
                raise ResultsError(f"cannot read results {', '.join(map(str, self.sources))}:"
                                   f" {first_line(exc2)}") from exc2
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
        files, good = expand_globs(self._local), []
        bad: list[tuple[str, str]] = []
        for path in files:
            try:
                pq.read_table(path)
            except Exception as exc:  # any failure at all means an unreadable file
                bad.append((path, first_line(exc)))
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
            if not (is_read_error(exc) and self._skip_unreadable()):
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
        raise ResultsError(unknown_column_msg(name, self.columns))

    def query(self, sql: str) -> pd.DataFrame:
        """Run one read-only SELECT (``FROM trials``) and return a DataFrame; ResultsError on a
        SQL error or on any other kind of statement (COPY, ATTACH, INSTALL, SET, ...)."""
        import duckdb

        check_select(self.con, sql)
        try:
            return self._run(sql).to_pandas()
        except duckdb.Error as exc:
            raise ResultsError(f"SQL error: {first_line(exc)} (the table is 'trials'; quote "
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
                raise ResultsError(f"SQL error in --where: {first_line(exc)}") from None
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
            raise ResultsError(f"SQL error in --where: {first_line(exc)}") from exc
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
            rows = match_front(rows, full, by_full, fvals,
                                ex[by_full][mask] if by_full else None)
        if by_full:
            return rows.sort_values([by_full, *full],
                                    ascending=[True, *[o.mode == "min" for o in objs]],
                                    kind="stable", na_position="last").reset_index(drop=True)
        return sort_front(rows, objs)


def match_front(rows: pd.DataFrame, cols: Sequence[str], by: str | None, fvals: np.ndarray,
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
