"""SQL over the store with DuckDB, read-only and confined to the store.

Tables (views): ``trials`` (one row per result) and ``curves`` (one row per result and β) over
every sweep's part files. After the views exist, DuckDB's external access is switched off, file
access is limited to the store and the configuration is locked; statements that are not queries
are refused before they reach DuckDB (ENGINEERING.md: COPY *into* the store would still be allowed).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from sweep.errors import SweepError
from sweep.store import TABLES, Store

_QUERY_START = re.compile(r"^\s*(\(\s*)*(select|with|from|values|describe|show|summarize|table|explain)\b", re.I)
_FORBIDDEN = re.compile(
    r"\b(copy|attach|detach|install|load|pragma|set|reset|create|insert|update|delete|drop|alter|"
    r"export|import|call|checkpoint|vacuum|use|begin|commit|rollback|read_\w+|glob|parquet_\w+|"
    r"sniff_csv|query_table|getenv)\b",
    re.I,
)


def _sql_literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def connect(store: Store):
    """A DuckDB connection with the store's views and external access locked down."""
    import duckdb

    root = store.root.resolve()
    con = duckdb.connect(":memory:")
    for table in TABLES:
        files = [p.resolve() for s in store.sweeps() for p in store.parts(s, table)]
        if files:
            listing = "[" + ", ".join(_sql_literal(f) for f in files) + "]"
            sql = f"CREATE VIEW {table} AS SELECT * FROM read_parquet({listing}, union_by_name=true)"
        else:
            sql = f"CREATE VIEW {table} AS SELECT NULL::VARCHAR AS sweep WHERE false"
        con.execute(sql)
    con.execute(f"SET allowed_directories=[{_sql_literal(root)}]")
    con.execute("SET enable_external_access=false")
    con.execute("SET lock_configuration=true")
    return con


def check_query(sql: str) -> None:
    """Refuse anything but a single read-only query over the store's tables."""
    stripped = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S).strip().rstrip(";").strip()
    if not stripped:
        raise SweepError("query must be a SQL SELECT over the tables trials and curves; got an empty string")
    if ";" in stripped:
        raise SweepError("query must be a single statement; got several separated by ';'")
    if not _QUERY_START.match(stripped):
        word = stripped.split()[0]
        raise SweepError(f"query must be a read-only SELECT over trials/curves; got a {word.upper()} statement")
    literal_free = re.sub(r"'(?:[^']|'')*'", "''", stripped)
    bad = _FORBIDDEN.search(literal_free)
    if bad:
        raise SweepError(
            f"query must only read the tables trials and curves; {bad.group(0)!r} is not allowed"
        )


def run_query(store: Store, sql: str) -> pd.DataFrame:
    """Run one read-only query; a DuckDB error becomes a one-line `SweepError`."""
    import duckdb

    check_query(sql)
    try:
        con = connect(store)
    except duckdb.Error as err:
        raise SweepError(f"store {store.root} could not be read: {_first_line(err)}") from None
    try:
        return con.execute(sql).fetchdf()
    except duckdb.Error as err:
        raise SweepError(f"query failed: {_first_line(err)}") from None
    finally:
        con.close()


def _first_line(err: Exception) -> str:
    return " ".join(str(err).split("\n")[:2]).strip()
