"""SQL over the store with DuckDB, read-only and confined to the store.

Tables (views): ``trials`` (one row per result), ``curves`` (one row per result and β) and
``dynamics`` (one row per result and training epoch) over every sweep's part files. Two
independent locks keep a query inside the store:

1. `check_query` parses the SQL with DuckDB's own parser (so string literals, dollar quotes and
   comments cannot hide anything) and accepts exactly one SELECT (DESCRIBE, SHOW and SUMMARIZE
   included) whose tables are ``trials``, ``curves``, ``dynamics`` or its own CTEs — no table functions
   (``read_csv``, ``glob``, ``query``…), no file paths as tables, no ``current_setting``.
2. `connect` creates the views, then switches DuckDB's external access off, limits file access
   to the store, disables extension autoloading, Python replacement scans and the temporary
   directory (which DuckDB would otherwise add to the allowed directories), and locks the
   configuration. ENGINEERING.md: COPY *into* the store would still pass this lock, which is why
   (1) refuses every statement that is not a query.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from backdoor_sweep.errors import SweepError
from sweep.store import TABLES, Store

#: table functions a query may call (they generate values; none touches a file)
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
#: scalar functions refused: they reveal the machine's configuration (paths, environment)
DENIED_FUNCTIONS = frozenset({"current_setting", "getenv", "getvariable"})
#: SHOW targets allowed besides the tables themselves (SHOW TABLES, SHOW ALL TABLES)
_SHOW_SPECIAL = frozenset({'"tables"', "tables", "__show_tables_expanded"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE_LIST = ", ".join(TABLES[:-1]) + " and " + TABLES[-1]
_ALLOWED = f"a single read-only SELECT over the tables {_TABLE_LIST}"


def _sql_literal(value: str | Path) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def connect(store: Store, memory_limit: str | None = None):
    """A DuckDB connection with the store's views and external access locked down.

    ``memory_limit`` (DuckDB's syntax, e.g. ``"1GB"``) caps what one query may hold; it is set
    before the configuration is locked, so the query cannot raise it.
    """
    import duckdb

    root = store.root.resolve()
    con = duckdb.connect(":memory:")
    if memory_limit is not None:
        con.execute(f"SET memory_limit={_sql_literal(memory_limit)}")
    for table in TABLES:
        files = [p.resolve() for s in store.sweeps() for p in store.parts(s, table)]
        if files:
            listing = "[" + ", ".join(_sql_literal(f) for f in files) + "]"
            sql = (
                f"CREATE VIEW {table} AS SELECT * FROM read_parquet({listing}, union_by_name=true)"
            )
        else:
            sql = f"CREATE VIEW {table} AS SELECT NULL::VARCHAR AS sweep WHERE false"
        con.execute(sql)
    for setting in (
        "temp_directory=''",
        f"allowed_directories=[{_sql_literal(root)}]",
        "autoload_known_extensions=false",
        "autoinstall_known_extensions=false",
        "allow_community_extensions=false",
        "python_enable_replacements=false",
        "enable_external_access=false",
        "lock_configuration=true",
    ):
        con.execute(f"SET {setting}")
    return con


_parsers = threading.local()


def _parser():
    """This thread's DuckDB connection for parsing (it never runs a query; a new one costs ~20 ms)."""
    import duckdb

    if getattr(_parsers, "con", None) is None:
        _parsers.con = duckdb.connect(":memory:")
    return _parsers.con


def check_query(sql: str) -> None:
    """Refuse anything but a single read-only query over the store's tables (see module doc)."""
    import duckdb

    if not sql.strip().rstrip(";").strip():
        raise SweepError(f"query must be {_ALLOWED}; got an empty string")
    parser = _parser()
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as err:
        raise SweepError(f"query is not valid SQL: {_first_line(err)}") from None
    if len(statements) != 1:
        raise SweepError(f"query must be a single statement; got {len(statements)}")
    kind = str(statements[0].type).rsplit(".", 1)[-1]
    if kind != "SELECT":
        raise SweepError(
            f"query must be {_ALLOWED}; got {_statement_word(sql, kind)}, which is not a query"
        )
    tree = json.loads(parser.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()[0])
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        raise SweepError(
            f"query must be {_ALLOWED}; got {tree.get('error_message', 'an unsupported statement')}"
        )
    ctes: set[str] = set()
    _collect_ctes(tree, ctes)
    _check_node(tree, {t.lower() for t in TABLES} | ctes)


def _statement_word(sql: str, kind: str) -> str:
    """The statement's first keyword as written (INSTALL, COPY…; DuckDB's type otherwise)."""
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S).split()
    return text[0].upper() if text and text[0].isalpha() else kind


def _collect_ctes(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict):
            # a CTE named like a file ("x.csv") could stand in for a file path out of its scope
            out.update(
                str(e.get("key", "")).lower()
                for e in cte_map.get("map", [])
                if _IDENTIFIER.match(str(e.get("key", "")))
            )
        for value in node.values():
            _collect_ctes(value, out)
    elif isinstance(node, list):
        for value in node:
            _collect_ctes(value, out)


def _check_node(node: Any, tables: set[str]) -> None:
    """Walk the parsed query; every table reference and function call must be allowed."""
    if isinstance(node, list):
        for value in node:
            _check_node(value, tables)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "BASE_TABLE":
        name = str(node.get("table_name", ""))
        if (
            name.lower() not in tables
            or node.get("catalog_name") not in ("", "memory")
            or node.get("schema_name") not in ("", "main")
        ):
            shown = ".".join(
                p for p in (node.get("catalog_name"), node.get("schema_name"), name) if p
            )
            raise SweepError(
                f"query must only read the tables {_TABLE_LIST}; got the table {shown!r}"
            )
    elif kind == "TABLE_FUNCTION":
        name = str((node.get("function") or {}).get("function_name", "?"))
        if name.lower() not in SAFE_TABLE_FUNCTIONS:
            raise SweepError(
                f"query must only read the tables {_TABLE_LIST}; got the table function {name}()"
            )
    elif kind == "SHOW_REF":
        name = str(node.get("table_name", ""))
        if name and name.lower() not in tables and name.lower() not in _SHOW_SPECIAL:
            raise SweepError(f"query may only DESCRIBE/SHOW the tables {_TABLE_LIST}; got {name!r}")
    if (
        node.get("class") == "FUNCTION"
        and str(node.get("function_name", "")).lower() in DENIED_FUNCTIONS
    ):
        raise SweepError(
            f"query must not call {node['function_name']}(): it reads the machine's configuration"
        )
    for value in node.values():
        _check_node(value, tables)


def run_query(
    store: Store,
    sql: str,
    *,
    max_rows: int | None = None,
    timeout_s: float | None = None,
    memory_limit: str | None = None,
) -> pd.DataFrame:
    """Run one read-only query; a DuckDB error becomes a one-line `SweepError`.

    Limits for a shared server: at most ``max_rows`` rows come back (the frame's
    ``attrs["truncated"]`` says whether more existed; the limit is pushed into the query, so the
    rest is never computed), a query still running after ``timeout_s`` seconds is interrupted and
    refused, and ``memory_limit`` caps its memory (see `connect`).
    """
    import duckdb

    check_query(sql)
    try:
        con = connect(store, memory_limit=memory_limit)
    except duckdb.Error as err:
        raise SweepError(f"store {store.root} could not be read: {_first_line(err)}") from None
    timer = threading.Timer(timeout_s, con.interrupt) if timeout_s is not None else None
    try:
        if timer is not None:
            timer.start()
        if max_rows is None:
            return con.execute(sql).fetchdf()
        df = con.sql(sql).limit(max_rows + 1).fetchdf()
        df.attrs["truncated"] = len(df) > max_rows
        return df.head(max_rows) if len(df) > max_rows else df
    except duckdb.InterruptException:
        raise SweepError(
            f"query must finish within {timeout_s:g} s; it was stopped (narrow it or add a LIMIT)"
        ) from None
    except duckdb.Error as err:
        raise SweepError(f"query failed: {_first_line(err)}") from None
    finally:
        if timer is not None:
            timer.cancel()
        con.close()


def _first_line(err: Exception) -> str:
    return " ".join(str(err).split("\n")[:2]).strip()
