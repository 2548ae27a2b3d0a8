"""`query` is bounded (time, memory, signals), reads long queries, PIVOTs, and keeps CTEs in scope."""

from __future__ import annotations

import os
import signal
import threading

import pandas as pd
import pytest

from backdoor_sweep.errors import SweepError
from sweep.query import connect, run_query
from tests.handmade import trials_frame, write_sweep

#: a cross join DuckDB needs hours for: only an interrupt ends it
ENDLESS = "SELECT sum(a.range * b.range) AS s FROM range(100000000) a, range(100000000) b"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("limits") / "store", "hand")


def test_a_query_past_its_timeout_is_stopped_in_one_line(store):
    with pytest.raises(SweepError) as err:
        run_query(store, ENDLESS, timeout=0.5)
    assert str(err.value) == (
        "query ran longer than --timeout 0.5 s and was stopped; narrow it or pass a larger --timeout"
    )
    with pytest.raises(SweepError, match="--timeout must be a positive number of seconds; got 0"):
        run_query(store, "SELECT 1", timeout=0)


def test_the_memory_limit_is_set_before_the_configuration_is_locked(store):
    import duckdb

    con = connect(store, memory_limit="64MB")
    try:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "61.0 MiB"
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET memory_limit = '100GB'")
    finally:
        con.close()
    with pytest.raises(SweepError) as err:
        run_query(
            store,
            "SELECT count(DISTINCT range::VARCHAR) AS n FROM range(20000000)",
            memory_limit="32MB",
        )
    assert "Out of Memory" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SweepError, match="--memory-limit must be a size such as 512MB or 4GB"):
        run_query(store, "SELECT 1", memory_limit="1GB'; SET x='1")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_interrupt_a_running_query(store, sig):
    # the CLI turns SIGTERM into Ctrl-C and installs its own Ctrl-C handler (backdoor_sweep.cli.
    # main); do the same here — a test run started in the background (`cmd &` without job
    # control) inherits SIGINT ignored, which the CLI overrides too
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    timer = threading.Timer(1.0, os.kill, (os.getpid(), sig))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_query(store, ENDLESS, timeout=3600)
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    assert run_query(store, "SELECT 1 AS one")["one"][0] == 1  # nothing is left running


def test_a_500_term_sum_is_checked_and_run(store):
    sql = "SELECT " + "+".join(["1"] * 500) + " AS n"
    assert run_query(store, sql)["n"][0] == 500
    deep = "SELECT " + "+".join(["1"] * 3000) + " AS n"
    with pytest.raises(SweepError) as err:
        run_query(store, deep)
    assert "depth" in str(err.value) and "\n" not in str(err.value)


SCOPES = [
    # a CTE named like a system view in one scope must not unlock the view in another
    "SELECT * FROM (WITH pg_settings AS (SELECT 1) SELECT 1), pg_settings",
    "SELECT * FROM (WITH duckdb_tables AS (SELECT 1) SELECT 1) t, duckdb_tables",
    "WITH information_schema AS (SELECT 1) SELECT * FROM information_schema.tables",
    "SELECT (WITH duckdb_views AS (SELECT 1 AS x) SELECT x FROM duckdb_views) AS a",
    # a CTE of one subquery is not visible in a sibling
    "SELECT * FROM (WITH t AS (SELECT 1 AS a) SELECT * FROM t), (SELECT * FROM t)",
]


@pytest.mark.parametrize("sql", SCOPES)
def test_cte_names_are_resolved_per_scope_and_never_name_the_catalogue(store, sql):
    with pytest.raises(SweepError) as err:
        run_query(store, sql)
    assert "\n" not in str(err.value) and "allowed_directories" not in str(err.value)


def test_ctes_still_work_in_their_scope(store):
    sql = (
        "WITH a AS (SELECT C, avg(asr) AS asr FROM trials GROUP BY C), "
        "b AS (SELECT * FROM a WHERE C > 0.1) "
        "SELECT count(*) AS n, (SELECT count(*) FROM (WITH c AS (SELECT 1) SELECT * FROM c)) AS m FROM b"
    )
    got = run_query(store, sql)
    assert got["n"][0] == 2 and got["m"][0] == 1


def test_pivot_is_accepted_and_matches_pandas(store):
    got = run_query(
        store, "PIVOT trials ON poison_rate USING avg(asr) GROUP BY C ORDER BY C"
    ).set_index("C")
    frame = trials_frame("hand")
    want = frame.pivot_table(index="C", columns="poison_rate", values="asr", aggfunc="mean")
    assert list(got.index) == list(want.index)
    for rate in want.columns:
        column = next(c for c in got.columns if float(c) == rate)
        pd.testing.assert_series_equal(
            got[column].astype(float), want[rate], check_names=False, rtol=1e-12
        )
    fixed = run_query(store, "PIVOT trials ON C IN (0.1, 10.0) USING count(*) GROUP BY learner")
    assert fixed[["0.1", "10.0"]].values.tolist() == [[24, 24]]


@pytest.mark.parametrize(
    "sql, needle",
    [
        ("PIVOT (SELECT * FROM read_csv('/etc/passwd')) ON a", "read_csv()"),
        ("PIVOT trials ON C USING max((SELECT count(*) FROM glob('/*')))", "glob()"),
        ("PIVOT trials ON C USING max(getenv('HOME')) GROUP BY gamma", "getenv()"),
        ("PIVOT trials ON C IN (SELECT 1 FROM read_text('/etc/passwd'))", "read_text()"),
        ("PIVOT trials ON C USING avg(asr) ORDER BY (SELECT 1 FROM glob('/*'))", "glob()"),
        ("PIVOT pg_settings ON name", "pg_settings"),
        ("PIVOT trials ON C USING avg(asr); COPY trials TO 'x.csv'", "single statement"),
    ],
)
def test_a_pivot_is_checked_like_any_query(store, sql, needle):
    with pytest.raises(SweepError) as err:
        run_query(store, sql)
    assert needle in str(err.value) and "\n" not in str(err.value)
