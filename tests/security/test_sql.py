"""``--where`` and ``prunetune query`` text is untrusted: one condition / one read-only SELECT,
run on a DuckDB connection that can read nothing but the results (issue 8, item 2)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from sweeps.results.pareto import Results, ResultsError, load_results
from sweeps.results.store import TrialStore
from tests.security.conftest import assert_refused, prunetune

INJECTION = "1=1); COPY (SELECT 1) TO 'PWNED.csv'; SELECT * FROM trials WHERE (1=1"
SECRET = "s3cr3t-line-in-a-private-file"

#: texts that are not one condition: each is refused (what they would do in brackets)
NOT_ONE_CONDITION = [
    INJECTION,  # a second and third statement (writes a file)
    "1=1) UNION ALL SELECT * FROM trials WHERE (1=1",  # rows twice
    "1=1) OR (1=1",  # would escape the status filter it is ANDed with
    "1=1) --",  # comments out whatever follows
    "1=1 /*",  # unterminated comment
    "1=1) GROUP BY ALL HAVING (1=1",
    "1=1) ORDER BY (1",
    "1=1); INSTALL httpfs; SELECT 1 WHERE (1=1",
    "1=1); ATTACH 'x.db' AS x; SELECT 1 WHERE (1=1",
    "",  # an empty condition
]


@pytest.mark.parametrize("where", NOT_ONE_CONDITION)
def test_where_that_is_not_one_condition_is_refused(results: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    where: str) -> None:
    monkeypatch.chdir(tmp_path)
    with Results(results) as res, pytest.raises(ResultsError) as err:
        res.front(["test_accuracy:max", "sparsity:max"], where=where or " ")
    assert "\n" not in str(err.value) and "--where" in str(err.value)
    assert list(tmp_path.glob("PWNED*")) == [] and not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("where", [
    "\"config.data.root\" IS NULL", "sweep IS NOT NULL", "NOT (sparsity > 0.5)",
    "NOT sparsity > 0.5",
    "sparsity IN (0.5, 0.9)", "sparsity NOT IN (0.5, 0.9)", "sparsity BETWEEN 0.5 AND 0.9",
    "criterion LIKE 'mag%'", "criterion NOT LIKE 'sn%' -- a comment",
    "criterion SIMILAR TO 'm.*'", "sparsity > 0.5 IS TRUE", "\"config.prune.steps\"::INT = 1",
    "CASE WHEN sparsity > 0.5 THEN true ELSE false END", "regexp_matches(criterion, '^m')",
    "sparsity = ANY(SELECT sparsity FROM trials)", "EXISTS (SELECT 1 FROM trials)",
    "criterion = 'a)--b'",
])
def test_every_kind_of_single_condition_is_accepted(results: Path, where: str) -> None:
    with Results(results) as res:
        got = res.load(where=where)
        # the same condition spelt by hand over the same rows gives the same trials
        want = res.query(f"SELECT * FROM trials WHERE status = 'ok' AND ({where}\n)")
    assert sorted(got["trial_id"]) == sorted(want["trial_id"])


def test_where_conditions_filter_exactly(results: Path) -> None:
    assert sorted(load_results(results, where="sparsity >= 0.8")["trial_id"]) == ["t02", "t03"]
    # a condition with its own brackets, OR, a subquery over trials and a trailing comment
    where = "(sparsity = 0.5 OR sparsity = 0.9) AND test_accuracy > " \
            "(SELECT min(test_accuracy) FROM trials) -- the best two of four"
    assert sorted(load_results(results, where=where)["trial_id"]) == ["t00"]
    with Results(results) as res:
        front = res.front(["test_accuracy:max", "sparsity:max"], where="sparsity < 0.85")
    # accuracies 0.8, 0.77, 0.76 at sparsities 0.5, 0.7, 0.8: each trades one for the other
    assert list(front["trial_id"]) == ["t00", "t01", "t02"]


def test_connection_is_locked_down(results: Path, tmp_path: Path) -> None:
    secret = tmp_path / "private.csv"
    secret.write_text(f"a\n{SECRET}\n")
    with Results(results) as res:
        settings = dict(res.con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access',"
            " 'autoinstall_known_extensions', 'autoload_known_extensions', "
            "'lock_configuration')").fetchall())
        assert settings == {"enable_external_access": "false", "lock_configuration": "true",
                            "autoinstall_known_extensions": "false",
                            "autoload_known_extensions": "false"}
        with pytest.raises(duckdb.Error, match="locked"):
            res.con.execute("SET enable_external_access = true")
        for sql in (f"SELECT * FROM read_csv('{secret}')", f"SELECT * FROM read_text('{secret}')",
                    f"SELECT * FROM read_csv('{results}/trials/../../private.csv')",
                    "SELECT * FROM glob('/*')"):
            with pytest.raises(ResultsError) as err:
                res.query(sql)
            assert SECRET not in str(err.value) and "Permission" in str(err.value)
        # the results themselves stay readable by file functions
        n = res.query(f"SELECT count(*) AS n FROM read_parquet('{results}/trials/*.parquet')")
        assert int(n["n"][0]) == 4


@pytest.mark.parametrize("sql", [
    "COPY (SELECT 1) TO 'PWNED.csv'",
    "COPY trials TO 'PWNED.parquet'",
    "SELECT 1; COPY (SELECT 1) TO 'PWNED.csv'",
    "ATTACH 'x.db' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "CREATE TABLE t AS SELECT * FROM trials",
    "PRAGMA version",
    "EXPORT DATABASE 'PWNED'",
    "EXPLAIN ANALYZE COPY (SELECT 1) TO 'PWNED.csv'",
    "SELECT * FROM query('COPY (SELECT 1) TO ''PWNED.csv''')",
    "COPY (SELECT 1) TO '{trials}/PWNED.csv'",  # the one directory files may be read from
    "SELECT * FROM query('COPY (SELECT 1) TO ''{trials}/PWNED.csv''')",
])
def test_query_is_read_only(results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            sql: str) -> None:
    monkeypatch.chdir(tmp_path)
    sql = sql.replace("{trials}", str(results / "trials"))
    with Results(results) as res, pytest.raises(ResultsError) as err:
        res.query(sql)
    assert "\n" not in str(err.value)
    with pytest.raises((ResultsError, duckdb.Error)):  # refused, or refused by DuckDB
        TrialStore(str(results)).query(sql)
    assert list(tmp_path.glob("PWNED*")) == [] and not (tmp_path / "x.db").exists()
    assert sorted(p.name for p in (results / "trials").iterdir()) == [
        f"t0{i}.parquet" for i in range(4)]


def test_store_query_reads_no_file(results: Path, tmp_path: Path) -> None:
    secret = tmp_path / "private.csv"
    secret.write_text(f"a\n{SECRET}\n")
    store = TrialStore(str(results))
    assert int(store.query("SELECT count(*) AS n FROM trials")["n"][0]) == 4
    with pytest.raises((duckdb.Error, ResultsError)) as err:  # the one query path wraps it
        store.query(f"SELECT * FROM read_csv('{secret}')")
    assert "file system operations are disabled" in str(err.value)
    assert SECRET not in str(err.value)


@pytest.mark.slow
def test_injection_writes_nothing_through_any_command(results: Path, tmp_path: Path) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    cases = [
        ("pareto", results, "--where", INJECTION),
        ("report", results, "--where", INJECTION, "--out", work / "r.html"),
        ("schedule", "export", results, "--best", "test_accuracy", "--where", INJECTION,
         "--out", work / "s.yaml"),
        ("query", results, f"SELECT * FROM trials WHERE ({INJECTION})"),
        ("query", results, "COPY (SELECT 1) TO 'PWNED.csv'"),
    ]
    for args in cases:
        p = prunetune(*args, cwd=work)
        assert_refused(p)
        assert sorted(work.iterdir()) == [], (args, sorted(work.iterdir()))
        assert len(list((results / "trials").iterdir())) == 4


@pytest.mark.slow
def test_file_contents_never_reach_the_error_line(results: Path, tmp_path: Path) -> None:
    secret = tmp_path / "private.csv"
    secret.write_text(f"a\n{SECRET}\n")
    for args in (("query", results, f"SELECT * FROM read_csv('{secret}')"),
                 ("query", results, "SELECT * FROM read_csv('/etc/passwd')"),
                 ("pareto", results, "--where",
                  f"sparsity = (SELECT a FROM read_csv('{secret}'))"),
                 ("schedule", "export", results, "--best", "test_accuracy", "--where",
                  f"CAST((SELECT a FROM read_csv('{secret}')) AS INT) = 1", "--out",
                  tmp_path / "s.yaml")):
        line = assert_refused(prunetune(*args, cwd=tmp_path), "Permission")
        assert SECRET not in line and "root:" not in line
    # an extension function: refused at once, nothing downloaded or installed
    assert_refused(prunetune("pareto", results, "--where", "ST_Area(sparsity) > 0",
                             cwd=tmp_path))


@pytest.mark.slow
def test_legitimate_where_and_queries_still_work(results: Path, tmp_path: Path) -> None:
    p = prunetune("pareto", results, "--where", "sparsity >= 0.8", "--format", "csv",
                  "--columns", "trial_id", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert sorted(line.split(",")[-1] for line in p.stdout.splitlines()[1:]) == ["t02", "t03"]
    p = prunetune("query", results, "SELECT trial_id FROM trials WHERE sparsity >= 0.8 "
                  "ORDER BY trial_id", "--format", "csv", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.split() == ["trial_id", "t02", "t03"], p.stderr
    p = prunetune("query", results, "DESCRIBE trials", "--format", "csv", cwd=tmp_path)
    assert p.returncode == 0 and "test_accuracy" in p.stdout
    out = tmp_path / "s.yaml"
    p = prunetune("schedule", "export", results, "--best", "test_accuracy", "--where",
                  "sparsity >= 0.8", "--out", out, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "from trial t02" in p.stdout  # 0.76 at 0.8 beats 0.75 at 0.9
    p = prunetune("report", results, "--where", "sparsity >= 0.7", "--out",
                  tmp_path / "r.html", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "r.html").stat().st_size > 1000
