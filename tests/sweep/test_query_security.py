"""`backdoor-sweep query` is safe to expose: it reads the store's tables and nothing else.

Two layers are tested separately: the statement check (`run_query`) and, bypassing it, the
locked DuckDB connection itself (`connect`), so one layer failing is caught by the tests.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

from backdoor_sweep.errors import SweepError
from sweep.query import connect, run_query
from sweep.store import Store
from tests.conftest import cli
from tests.handmade import write_sweep

SECRET = "s3cr3t-value"


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """A store with a sweep (trials and curves), a folder beside it and one whose name extends it."""
    root = tmp_path_factory.mktemp("q")
    store = write_sweep(root / "store", "hand", with_curves=True)
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text(f"a,b\n{SECRET},2\n")
    (outside / "secret.txt").write_text(SECRET)
    pd.DataFrame({"a": [SECRET]}).to_parquet(outside / "secret.parquet")
    evil = root / "store-evil"  # shares the store's name as a prefix
    evil.mkdir()
    (evil / "secret.csv").write_text(f"a\n{SECRET}\n")
    return {"store": store, "root": root, "out": outside, "evil": evil}


def snapshot(root) -> set[str]:
    return {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}


FORBIDDEN = [
    # reading files outside (and inside) the store through table functions
    ("SELECT * FROM read_csv('{out}/secret.csv')", "read_csv()"),
    ("SELECT * FROM read_csv_auto('{out}/secret.csv')", "read_csv_auto()"),
    ("SELECT * FROM read_parquet('{out}/secret.parquet')", "read_parquet()"),
    ("SELECT * FROM read_parquet('{store_dir}/hand/trials/*.parquet')", "read_parquet()"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text()"),
    ("SELECT * FROM read_blob('{out}/secret.txt')", "read_blob()"),
    ("SELECT * FROM read_json_auto('{store_dir}/hand/sweep.json')", "read_json_auto()"),
    ("SELECT * FROM glob('{out}/*')", "glob()"),
    ("SELECT * FROM glob('{store_dir}/*/*')", "glob()"),
    ("SELECT * FROM sniff_csv('{out}/secret.csv')", "sniff_csv()"),
    ("SELECT * FROM parquet_metadata('{out}/secret.parquet')", "parquet_metadata()"),
    ("SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')", "query()"),
    ("SELECT * FROM query_table('trials')", "query_table()"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings()"),
    # file paths used as tables (replacement scans)
    ("SELECT * FROM '/etc/passwd'", "'/etc/passwd'"),
    ("SELECT * FROM '{out}/secret.csv'", "secret.csv"),
    ('SELECT * FROM "{out}/secret.parquet"', "secret.parquet"),
    ("SELECT * FROM '{evil}/secret.csv'", "secret.csv"),
    ("SELECT * FROM (WITH \"x.csv\" AS (SELECT 1) SELECT 1), 'x.csv'", "'x.csv'"),
    ("SELECT * FROM information_schema.tables", "information_schema.tables"),
    # hidden in subqueries, CTEs, lateral joins, DESCRIBE
    ("SELECT * FROM trials WHERE C IN (SELECT 1 FROM read_csv('{out}/secret.csv'))", "read_csv()"),
    ("WITH t AS (SELECT * FROM read_text('{out}/secret.txt')) SELECT * FROM t", "read_text()"),
    ("SELECT * FROM trials, LATERAL (SELECT * FROM glob('/etc/*'))", "glob()"),
    ("DESCRIBE SELECT * FROM read_text('/etc/passwd')", "read_text()"),
    # string tricks: dollar quotes, comments and quotes do not hide a second statement or a call
    ("SELECT $$ ' $$ AS a, * FROM read_text('{out}/secret.txt')", "read_text()"),
    ("SELECT 1 /* ' */; COPY trials TO '{store_dir}/x.csv'", "single statement"),
    ("SELECT ';' AS a; ATTACH '{out}/x.db' AS x", "single statement"),
    ("SELECT 1; SELECT 2", "single statement"),
    # configuration and the machine
    ("SELECT current_setting('allowed_directories')", "current_setting()"),
    ("SELECT getenv('HOME')", "getenv()"),
    ("SET enable_external_access = true", "got SET, which"),
    ("RESET allowed_directories", "got RESET, which"),
    ("PRAGMA enable_profiling", "got PRAGMA, which"),
    ("CALL pragma_version()", "got CALL, which"),
    ("USE system", "got USE, which"),
    # other databases, extensions, writing
    ("ATTACH '{out}/x.db' AS x", "got ATTACH, which"),
    ("DETACH memory", "got DETACH, which"),
    ("INSTALL httpfs", "got INSTALL, which"),
    ("LOAD httpfs", "got LOAD, which"),
    ("COPY trials TO '{out}/leak.csv'", "got COPY, which"),
    ("COPY trials TO '{store_dir}/leak.csv'", "got COPY, which"),
    (
        "COPY (SELECT * FROM trials) TO '{store_dir}/hand/trials/part-x.parquet' (FORMAT parquet)",
        "got COPY, which",
    ),
    ("EXPORT DATABASE '{store_dir}/dump'", "got EXPORT, which"),
    ("CREATE TABLE t AS SELECT * FROM trials", "got CREATE, which"),
    ("CREATE VIEW v AS SELECT 1", "got CREATE, which"),
    ("INSERT INTO trials VALUES (1)", "got INSERT, which"),
    ("UPDATE trials SET C = 0", "got UPDATE, which"),
    ("DELETE FROM trials", "got DELETE, which"),
    ("DROP VIEW trials", "got DROP, which"),
    ("CHECKPOINT", "got CHECKPOINT, which"),
    ("EXPLAIN SELECT * FROM trials", "got EXPLAIN, which"),
    ("", "empty"),
    ("SELEC * FROM trials", "not valid SQL"),
]


@pytest.mark.parametrize("template, needle", FORBIDDEN, ids=[t[:60] for t, _ in FORBIDDEN])
def test_forbidden_statement_is_refused_and_writes_nothing(paths, template, needle):
    sql = template.format(out=paths["out"], evil=paths["evil"], store_dir=paths["store"].root)
    before = snapshot(paths["root"])
    with pytest.raises(SweepError) as err:
        run_query(paths["store"], sql)
    message = str(err.value)
    assert needle in message and "\n" not in message
    assert SECRET not in message
    assert snapshot(paths["root"]) == before


@pytest.mark.parametrize(
    "sql, check",
    [
        ("SELECT count(*) AS n FROM trials WHERE learner = 'svm_rbf'", lambda df: df["n"][0] == 72),
        (
            "SELECT 'read_csv(''/etc/passwd''); COPY trials TO ''x''' AS s",
            lambda df: df["s"][0].startswith("read_csv("),
        ),
        (
            "SELECT count(*) AS n FROM trials WHERE error = 'ATTACH; INSTALL; SET'",
            lambda df: df["n"][0] == 0,
        ),
        (
            "WITH t AS (SELECT C, avg(asr) AS asr FROM trials GROUP BY C) SELECT * FROM t ORDER BY C",
            lambda df: len(df) == 3,
        ),
        (
            "SELECT t.C, avg(c.loss_backdoor) AS l FROM trials t JOIN curves c USING (result_id) GROUP BY ALL",
            lambda df: len(df) == 3,
        ),
        (
            "FROM trials SELECT DISTINCT gamma ORDER BY gamma",
            lambda df: df["gamma"].tolist() == [0.01, 0.1],
        ),
        ("DESCRIBE trials", lambda df: "asr" in df["column_name"].tolist()),
        ("SHOW TABLES", lambda df: sorted(df["name"]) == ["curves", "dynamics", "trials"]),
        ("SELECT * FROM range(3) -- ; COPY trials TO 'x'", lambda df: len(df) == 3),
        ("SELECT * FROM memory.main.trials LIMIT 2;", lambda df: len(df) == 2),
    ],
)
def test_legitimate_queries_still_work(paths, sql, check):
    assert check(run_query(paths["store"], sql))


RAW = [
    "SELECT * FROM read_csv('{out}/secret.csv')",
    "SELECT * FROM read_parquet('{out}/secret.parquet')",
    "SELECT * FROM read_text('{out}/secret.txt')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM glob('{out}/*')",
    "SELECT * FROM '{out}/secret.csv'",
    "SELECT * FROM read_csv('{evil}/secret.csv')",
    "SELECT * FROM read_csv('{store_dir}/../outside/secret.csv')",
    "ATTACH '{out}/x.db' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "COPY (SELECT 1) TO '{out}/leak.csv'",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SELECT * FROM secret_frame",
]


@pytest.mark.parametrize("template", RAW, ids=[t[:60] for t in RAW])
def test_locked_connection_refuses_even_without_the_statement_check(paths, template):
    import duckdb

    secret_frame = pd.DataFrame({"a": [SECRET]})  # noqa: F841 - a Python replacement scan would find it
    sql = template.format(out=paths["out"], evil=paths["evil"], store_dir=paths["store"].root)
    before = snapshot(paths["root"])
    con = connect(paths["store"])
    try:
        with pytest.raises(duckdb.Error):
            con.execute(sql).fetchall()
    finally:
        con.close()
    assert snapshot(paths["root"]) == before


def test_locked_connection_allows_only_the_store_folder(paths):
    con = connect(paths["store"])
    try:
        allowed = con.execute("SELECT current_setting('allowed_directories')").fetchone()[0]
        assert [a.rstrip("/") for a in allowed] == [str(paths["store"].root.resolve())]
        assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 72
    finally:
        con.close()


def test_empty_store_has_empty_tables(tmp_path):
    assert run_query(Store(tmp_path), "SELECT count(*) AS n FROM trials")["n"][0] == 0


@pytest.mark.slow
def test_cli_refuses_copy_with_one_line(paths, cli_env):
    target = paths["store"].root / "leak.csv"
    res = cli(
        "query", f"COPY trials TO '{target}'", "--store", str(paths["store"].root), env=cli_env
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "read-only SELECT" in res.stderr and not target.exists()


def test_a_row_limit_is_pushed_into_the_query(paths):
    store = paths["store"]
    df = run_query(store, "select * from range(1000000000000)", max_rows=5)
    assert list(df.iloc[:, 0]) == [0, 1, 2, 3, 4] and df.attrs["truncated"] is True
    df = run_query(store, "select count(*) as n from trials", max_rows=5)
    assert df.attrs["truncated"] is False and len(df) == 1
    assert len(run_query(store, "describe trials", max_rows=3)) == 3
