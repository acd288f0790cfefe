"""The SQL sandbox of every results connection (see SECURITY.md): untrusted ``--where`` text
must parse as exactly one SQL condition on the rows (checked on DuckDB's own parse tree) and is
run as the body of a view, never pasted into a larger statement; ad-hoc queries must be one
``SELECT``. Once the views exist the connection is locked down: no file access outside the
results files, no extension install or autoload, and no setting can be changed back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sweeps.results.errors import ResultsError, first_line


def sql_string(s: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + s.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
        raise ResultsError(f"SQL error: {first_line(exc)} (the table is 'trials'; quote "
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
        raise ResultsError(f"SQL error in --where: {first_line(exc)}") from None
    bad = ResultsError(f"--where {where!r}: must be exactly one condition on the rows, e.g. "
                       "--where \"sparsity >= 0.9 AND criterion = 'snip'\"; statements, "
                       "';', UNION, GROUP BY and comments are refused")
    if len(stmts) != 1 or stmts[0].type != duckdb.StatementType.SELECT:
        raise bad
    try:
        got = _ast(con, sql)
        ref = _ast(con, f"SELECT * FROM {table} WHERE (\nTRUE\n)")
    except duckdb.Error as exc:  # json_serialize_sql is built into DuckDB's Python wheels
        raise ResultsError(f"--where: cannot check the condition ({first_line(exc)}); "
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


def is_read_error(exc: BaseException) -> bool:
    """A DuckDB error that may come from reading a damaged file rather than from the SQL (a
    corrupt page can surface as a bare ``duckdb.Error``): worth one check of the files."""
    import duckdb

    return not isinstance(exc, duckdb.ParserException | duckdb.BinderException |
                          duckdb.CatalogException | duckdb.PermissionException |
                          duckdb.ConversionException | duckdb.OutOfRangeException |
                          duckdb.NotImplementedException | duckdb.InterruptException)
