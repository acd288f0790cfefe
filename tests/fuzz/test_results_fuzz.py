"""``pareto``, ``query``, ``report`` and ``schedule export`` over a small results directory
(built once per session), in-process.

Rules: damaged results paths (missing, a file, empty, truncated Parquet files at every 1/6 of
their length, a good file next to a damaged one) x every command; hostile ``--where`` text x
every command that takes it; hostile query text; malformed objectives, references, formats,
statuses, columns; bad output paths for every output option.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import check, check_accepted, check_refused, invoke

#: the four readers, each with the arguments that make it do its normal work
READERS: dict[str, Callable[[Path, Path], list[str | Path]]] = {
    "pareto": lambda r, t: ["pareto", r],
    "query": lambda r, t: ["query", r, "SELECT count(*) AS n FROM trials"],
    "report": lambda r, t: ["report", r, "--out", t / "r.html"],
    "export": lambda r, t: ["schedule", "export", r, "--best", "test_accuracy",
                            "--out", t / "s.yaml"],
}
#: what each reader prints on success
SUCCESS = {"pareto": "Pareto front", "query": "n", "report": "report written",
           "export": "written to"}


def _parquet_files(results: Path) -> list[Path]:
    return sorted(results.rglob("*.parquet"))


def _copy(results: Path, tmp: Path) -> Path:
    dst = tmp / "res"
    shutil.copytree(results, dst)
    return dst


def _only_damaged(results: Path, tmp: Path, cut: float) -> Path:
    """A results dir whose every Parquet file is cut to ``cut`` of its length."""
    dst = _copy(results, tmp)
    for f in _parquet_files(dst):
        data = f.read_bytes()
        f.write_bytes(data[: int(len(data) * cut)])
    return dst


def _one_damaged(results: Path, tmp: Path, cut: float) -> Path:
    """The good files plus one more cut to ``cut`` of a real file's length."""
    dst = _copy(results, tmp)
    first = _parquet_files(dst)[0]
    (first.parent / "zz_damaged.parquet").write_bytes(
        first.read_bytes()[: int(first.stat().st_size * cut)])
    return dst


def _text_as_parquet(results: Path, tmp: Path) -> Path:
    dst = _copy(results, tmp)
    for f in _parquet_files(dst):
        f.write_bytes(b"trial_id,status\nt0,ok\n")
    return dst


def _empty_dir(results: Path, tmp: Path) -> Path:
    (tmp / "empty" / "trials").mkdir(parents=True)
    return tmp / "empty"


def _a_file(results: Path, tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("not results\n")
    return tmp / "notes.txt"


CUTS = [i / 6 for i in range(6)]
DAMAGE: list[Any] = [
    pytest.param(lambda r, t: t / "missing", None, id="missing"),
    pytest.param(_a_file, None, id="a-text-file"),
    pytest.param(_empty_dir, None, id="empty-dir"),
    pytest.param(_text_as_parquet, None, id="csv-named-parquet"),
    *[pytest.param(lambda r, t, c=c: _only_damaged(r, t, c), None, id=f"all-cut-{c:.2f}")
      for c in CUTS],
    *[pytest.param(lambda r, t, c=c: _one_damaged(r, t, c), "skip", id=f"one-cut-{c:.2f}")
      for c in CUTS],
]


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize(("make", "policy"), DAMAGE)
def test_damaged_results(results_dir: Path, tmp_path: Path, reader: str,
                         make: Callable[[Path, Path], Path], policy: str | None) -> None:
    """Nothing readable: refused. One damaged file among good ones: skipped with one warning
    naming it (SECURITY.md: the same policy for every reader), and the command does its work."""
    out = invoke(*READERS[reader](make(results_dir, tmp_path), tmp_path))
    if policy is None:
        check_refused(out)
    else:
        check_accepted(out, SUCCESS[reader], warnings=1)
        assert "zz_damaged.parquet" in out.stderr, str(out)


#: hostile or malformed ``--where`` text: (text, valid reason or None)
WHERE: list[Any] = [
    pytest.param("1=1); COPY (SELECT 1) TO '{pwn}'; SELECT * FROM trials WHERE (1=1", None,
                 id="copy-injection"),
    pytest.param("1=1; DROP TABLE trials", None, id="second-statement"),
    pytest.param("1=1 -- ", "the comment swallows nothing: the checked condition is 1=1",
                 id="trailing-comment"),
    pytest.param("1=1 /* unclosed", None, id="open-comment"),
    pytest.param("1=1) OR (1=1", None, id="paren-escape"),
    pytest.param("1=1 UNION SELECT * FROM trials", None, id="union"),
    pytest.param("1=1 ORDER BY 1", None, id="order-by"),
    pytest.param("1=1 GROUP BY ALL", None, id="group-by"),
    pytest.param("(SELECT count(*) FROM read_csv('/etc/passwd')) > 0", None, id="read-csv"),
    pytest.param("length(read_text('/etc/passwd')) > 0", None, id="read-text"),
    pytest.param("nosuch_column > 1", None, id="unknown-column"),
    pytest.param("sparsity >=", None, id="syntax"),
    pytest.param("sparsity ~~~ 0.5", None, id="odd-operator"),
    pytest.param("", "an empty --where is no filter", id="empty"),
    pytest.param("   ", None, id="blank"),
    pytest.param("sparsity >= 0.7", "one condition", id="valid-condition"),
    pytest.param("criterion = 'magnitude' AND sparsity < 0.85", "short names work",
                 id="valid-short-names"),
]


WHERE_CASES = [pytest.param(reader, *p.values, id=f"{p.id}-{reader}")
               for p in WHERE for reader in ("pareto", "report", "export")]


@pytest.mark.parametrize(("reader", "where", "valid"), WHERE_CASES)
def test_where(results_dir: Path, tmp_path: Path, reader: str, where: str,
               valid: str | None) -> None:
    pwn = tmp_path / "pwn.csv"
    out = invoke(*READERS[reader](results_dir, tmp_path), "--where",
                 where.replace("{pwn}", str(pwn)))
    check(out, valid, *([SUCCESS[reader]] if valid else ["where"]))
    assert not pwn.exists()
    assert "root:" not in out.stderr + out.stdout  # no file contents in any message


QUERY: list[Any] = [
    pytest.param("COPY (SELECT 1) TO '{pwn}'", None, id="copy-to"),
    pytest.param("ATTACH '{pwn}' AS x", None, id="attach"),
    pytest.param("INSTALL httpfs", None, id="install"),
    pytest.param("LOAD httpfs", None, id="load"),
    pytest.param("SET enable_external_access = true", None, id="set"),
    pytest.param("PRAGMA version", None, id="pragma"),
    pytest.param("CREATE TABLE x AS SELECT 1", None, id="create"),
    pytest.param("SELECT 1; SELECT 2", None, id="two-statements"),
    pytest.param("SELECT * FROM read_csv('/etc/passwd')", None, id="read-csv"),
    pytest.param("SELECT content FROM read_text('/etc/passwd')", None, id="read-text"),
    pytest.param("SELECT * FROM 'other.parquet'", None, id="replacement-scan"),
    pytest.param("", None, id="empty"),
    pytest.param("SELEC 1", None, id="syntax"),
    pytest.param("SELECT * FROM nosuch", None, id="unknown-table"),
    pytest.param("SELECT nosuch FROM trials", None, id="unknown-column"),
    pytest.param("SELECT 1/0 AS x", "DuckDB's 1/0 is NULL", id="divide-by-zero"),
    pytest.param("SELECT count(*) AS n FROM trials", "a read-only SELECT", id="valid-count"),
    pytest.param("DESCRIBE trials", "DESCRIBE is read-only", id="valid-describe"),
]


@pytest.mark.parametrize(("sql", "valid"), QUERY)
def test_query(results_dir: Path, tmp_path: Path, sql: str, valid: str | None) -> None:
    pwn = tmp_path / "pwn.db"
    out = invoke("query", results_dir, sql.replace("{pwn}", str(pwn)))
    check(out, valid)
    assert not pwn.exists()
    assert "root:" not in out.stderr + out.stdout


OPTIONS: list[Any] = [
    *[pytest.param(cmd, ["-o", o], None, id=f"{cmd}:objective={o or 'empty'}")
      for cmd in ("pareto", "report")
      for o in ("test_accuracy", "test_accuracy:up", "nosuch:max", ":max", "", "a:b:c")],
    *[pytest.param(cmd, ["-o", "test_accuracy:max"], None, id=f"{cmd}:one-objective")
      for cmd in ("pareto", "report")],
    *[pytest.param(cmd, ["-o", "sparsity:max", "-o", "sparsity:min"], None,
                   id=f"{cmd}:repeated-objective") for cmd in ("pareto", "report")],
    *[pytest.param(cmd, [x for c in ("test_accuracy", "sparsity", "flops", "params")
                         for x in ("-o", f"{c}:max")], None, id=f"{cmd}:four-objectives")
      for cmd in ("pareto", "report")],
    *[pytest.param(cmd, ["--ref", r], None, id=f"{cmd}:ref={r or 'empty'}")
      for cmd in ("pareto", "report")
      for r in ("a,b", "1", "1,2,3", "nan,nan", "inf,0", "", "1e999,0")],
    *[pytest.param(cmd, ["--include-status", s], None, id=f"{cmd}:status={s}")
      for cmd in ("pareto", "report") for s in ("bogus", "ok,bogus", "")],
    *[pytest.param(cmd, ["--by", "nosuch"], None, id=f"{cmd}:by-unknown")
      for cmd in ("pareto", "report")],
    pytest.param("pareto", ["--format", "xml"], None, id="pareto:format-xml"),
    pytest.param("query", ["--format", "xml"], None, id="query:format-xml"),
    pytest.param("pareto", ["--columns", "nosuch"], None, id="pareto:columns-unknown"),
    pytest.param("pareto", ["--plot", "front.txt"], None, id="pareto:plot-suffix"),
    pytest.param("export", ["--trial", "nosuch"], None, id="export:trial-unknown"),
    pytest.param("export", ["--best", "nosuch"], None, id="export:best-unknown"),
    pytest.param("pareto", ["--format", "csv"], "csv output", id="pareto:valid-csv"),
    pytest.param("pareto", ["--format", "json"], "json output", id="pareto:valid-json"),
    pytest.param("pareto", ["--ref", "0,0"], "a reference point", id="pareto:valid-ref"),
    pytest.param("pareto", ["--include-status", "all"], "all statuses",
                 id="pareto:valid-status"),
    pytest.param("pareto", ["--by", "criterion"], "group by a short name", id="pareto:valid-by"),
    pytest.param("export", ["--trial", "t01"], "an ok trial by id", id="export:valid-trial"),
    pytest.param("export", ["--min"], "--best with --min", id="export:valid-min"),
]


@pytest.mark.parametrize(("reader", "args", "valid"), OPTIONS)
def test_options(results_dir: Path, tmp_path: Path, reader: str, args: list[str],
                 valid: str | None) -> None:
    base = READERS[reader](results_dir, tmp_path)
    if reader == "query":
        base = base[:2] + args + base[2:]
        args = []
    if reader == "export" and "--trial" in args:
        base = [a for a in base if a not in ("--best", "test_accuracy")]
    check(invoke(*base, *args), valid)


def _file(t: Path) -> Path:
    (t / "file").write_text("x")
    return t / "file"


def _dir_named(t: Path, name: str) -> Path:
    (t / name).mkdir()
    return t / name


OUT_PATHS: list[Any] = [
    pytest.param(lambda t, n: _dir_named(t, n), "is a directory", id="directory"),
    pytest.param(lambda t, n: Path("/sys") / n, "cannot write", id="unwritable"),
    pytest.param(lambda t, n: _file(t) / n, "not a directory", id="parent-is-file"),
    pytest.param(lambda t, n: Path("/dev/null"), "", id="dev-null"),
]
OUT_OPTIONS = {"pareto": ("--plot", "front.png"), "report": ("--out", "r.html"),
               "export": ("--out", "s.yaml")}


OUT_CASES = [pytest.param(reader, *p.values, id=f"{p.id}-{reader}")
             for p in OUT_PATHS for reader in OUT_OPTIONS
             if not (reader == "pareto" and p.id == "dev-null")]  # no .png: plot-suffix case


@pytest.mark.parametrize(("reader", "make", "needle"), OUT_CASES)
def test_output_paths(results_dir: Path, tmp_path: Path, reader: str, make: Any,
                      needle: str) -> None:
    option, name = OUT_OPTIONS[reader]
    target = make(tmp_path, name)
    base = [a for a in READERS[reader](results_dir, tmp_path) if a != tmp_path / name]
    if option in base:
        base.remove(option)
    check_refused(invoke(*base, option, target), option, needle)


@pytest.mark.parametrize(("make", "needle"), OUT_PATHS[:3])
def test_report_png_dir(results_dir: Path, tmp_path: Path, make: Any, needle: str) -> None:
    target = make(tmp_path, "pngs")
    if needle == "is a directory":  # a directory is what --png-dir wants: a file is not
        target = _file(tmp_path)
        needle = "not a directory"
    check_refused(invoke(*READERS["report"](results_dir, tmp_path), "--png-dir", target),
                  "--png-dir", needle)
