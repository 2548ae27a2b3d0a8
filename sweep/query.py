"""SQL over the store with DuckDB, read-only, confined to the store, bounded in time and memory.

Tables (views): ``trials`` (one row per result), ``curves`` (one row per result and β) and
``dynamics`` (one row per result and training epoch) over every sweep's part files. Two
independent locks keep a query inside the store:

1. `check_query` parses the SQL with DuckDB's own parser (so string literals, dollar quotes and
   comments cannot hide anything) and accepts exactly one SELECT (DESCRIBE, SHOW, SUMMARIZE and
   PIVOT included) whose tables are ``trials``, ``curves``, ``dynamics`` or its own CTEs where
   they are in scope — no table functions (``read_csv``, ``glob``, ``query``…), no file paths as
   tables, no system catalogue (a CTE may not take a system view's name), no ``current_setting``.
   The parse tree is walked without recursion, so a long ``1+1+…`` is checked like any query.
2. `connect` creates the views, then switches DuckDB's external access off, limits file access
   to the store, disables extension autoloading, Python replacement scans and the temporary
   directory (which DuckDB would otherwise add to the allowed directories), sets the memory limit
   and locks the configuration. COPY *into* the store would still pass this lock, which is why
   (1) refuses every statement that is not a query.

A query runs in a worker thread while the caller waits: it is interrupted after ``timeout``
seconds, and Ctrl-C or SIGTERM (which the CLI turns into Ctrl-C) interrupts it at once.

`sweep.where` runs every command's ``--where`` the same way.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from backdoor_sweep.errors import SweepError
from sweep.schema import TABLES
from sweep.store import Store

#: table functions a query may call (they generate values; none touches a file)
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
#: scalar functions refused: they reveal the machine's configuration (paths, environment)
DENIED_FUNCTIONS = frozenset({"current_setting", "getenv", "getvariable"})
#: how long a query may run, and how much memory DuckDB may use for it (no spilling to disk)
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_LIMIT = "4GB"
#: SHOW targets allowed besides the tables themselves (SHOW TABLES, SHOW ALL TABLES)
_SHOW_SPECIAL = frozenset({'"tables"', "tables", "__show_tables_expanded"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.I)
_TABLE_LIST = ", ".join(TABLES[:-1]) + " and " + TABLES[-1]
_ALLOWED = f"a single read-only SELECT over the tables {_TABLE_LIST}"
_WHERE_EXAMPLE = 'e.g. "C = 10 AND poison_rate BETWEEN 0.05 AND 0.2"'


def _sql_literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def connect(
    store: Store, sweeps: list[str] | None = None, memory_limit: str = DEFAULT_MEMORY_LIMIT
):
    """A DuckDB connection with the views of ``sweeps`` (default: every sweep) locked down."""
    import duckdb

    if not _MEMORY.match(str(memory_limit).strip()):
        raise SweepError(
            f"--memory-limit must be a size such as 512MB or 4GB; got {memory_limit!r}"
        )
    root = store.root.resolve()
    names = store.sweeps() if sweeps is None else sweeps
    con = duckdb.connect(":memory:")
    for table in TABLES:
        files = [p.resolve() for s in names for p in store.parts(s, table)]
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
        f"memory_limit='{str(memory_limit).strip()}'",
        "TimeZone='UTC'",  # timestamps come back as stored (UTC), not in the machine's zone
        "enable_external_access=false",
        "lock_configuration=true",
    ):
        con.execute(f"SET {setting}")
    return con


# -- the statement check ---------------------------------------------------------------------
_parsers = threading.local()


@contextmanager
def parser_connection():
    """This thread's DuckDB connection for parsing. It never runs a query of the user's, and a new
    one costs ≈ 20 ms, a third of a small query (BENCHMARKS.md, the team service), so it is kept."""
    import duckdb

    if getattr(_parsers, "con", None) is None:
        _parsers.con = duckdb.connect(":memory:")
    yield _parsers.con


@lru_cache(maxsize=1)
def system_names() -> frozenset[str]:
    """Names a query may not give a CTE: DuckDB's system views and table functions (a bare
    ``FROM pg_settings`` outside the CTE's scope would read the real one)."""
    with parser_connection() as con:
        rows = con.execute(
            "SELECT view_name FROM duckdb_views() WHERE internal "
            "UNION SELECT function_name FROM duckdb_functions() WHERE function_type = 'table' "
            "UNION SELECT schema_name FROM duckdb_schemas()"
        ).fetchall()
    return frozenset(str(r[0]).lower() for r in rows)


def parse_tree(con, sql: str) -> dict:
    """DuckDB's parse tree of a SELECT as JSON (deep trees parse too: the limit is raised)."""
    text = con.execute("SELECT json_serialize_sql(?::VARCHAR)", [sql]).fetchone()[0]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # DuckDB caps expressions at depth 1000
    try:
        return json.loads(text)
    except RecursionError:
        raise SweepError("query is nested too deeply to be checked; simplify it") from None
    finally:
        sys.setrecursionlimit(limit)


def check_query(sql: str) -> None:
    """Refuse anything but a single read-only query over the store's tables (see module doc)."""
    import duckdb

    if not sql.strip().rstrip(";").strip():
        raise SweepError(f"query must be {_ALLOWED}; got an empty string")
    with parser_connection() as parser:
        try:
            statements = parser.extract_statements(sql)
        except duckdb.Error as err:
            raise SweepError(f"query is not valid SQL: {first_line(err)}") from None
        if len(statements) != 1:
            raise SweepError(f"query must be a single statement; got {len(statements)}")
        kind = str(statements[0].type).rsplit(".", 1)[-1]
        checked = sql
        if kind == "MULTI" and _statement_word(sql, kind) in ("PIVOT", "PIVOT_WIDER"):
            checked = _pivot_as_select(sql)  # a PIVOT with its columns found at run time
        elif kind != "SELECT":
            raise SweepError(
                f"query must be {_ALLOWED}; got {_statement_word(sql, kind)}, which is not a query"
            )
        tree = parse_tree(parser, checked)
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        raise SweepError(
            f"query must be {_ALLOWED}; got {tree.get('error_message', 'an unsupported statement')}"
        )
    _check_tree(tree, frozenset(t.lower() for t in TABLES))


def _statement_word(sql: str, kind: str) -> str:
    """The statement's first keyword as written (INSTALL, COPY…; DuckDB's type otherwise)."""
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S).split()
    return text[0].upper() if text and text[0].replace("_", "").isalpha() else kind


#: the clauses of a PIVOT statement, in order, and how each reads inside an equivalent SELECT
_PIVOT_CLAUSES = {
    "ON": "SELECT",
    "USING": ",",
    "GROUP": "GROUP",
    "ORDER": "ORDER",
    "LIMIT": "LIMIT",
}


def _pivot_as_select(sql: str) -> str:
    """A SELECT holding every table and expression of a PIVOT statement, for the check only.

    ``PIVOT src ON cols USING aggs GROUP BY g ORDER BY o LIMIT n`` reads what ``SELECT cols, aggs
    FROM src GROUP BY g ORDER BY o LIMIT n`` reads; the clauses are cut at DuckDB's own tokens
    (outside parentheses, strings and comments), so nothing escapes the check.
    """
    import duckdb

    tokens = duckdb.tokenize(sql)
    cuts: list[tuple[int, str]] = []
    depth = 0
    for i, (start, kind) in enumerate(tokens):
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(sql)
        word = sql[start:end].strip()
        if str(kind).endswith("operator"):
            depth += word.count("(") - word.count(")")
        elif str(kind).endswith("keyword") and depth == 0:
            upper = word.upper()
            if not cuts and upper in ("PIVOT", "PIVOT_WIDER"):
                cuts.append((end, "PIVOT"))
            elif upper in _PIVOT_CLAUSES and cuts:
                cuts.append((start, upper))
    if not cuts:
        raise SweepError(f"query must be {_ALLOWED}; got a PIVOT that could not be read")
    pieces: dict[str, str] = {}
    for k, (start, name) in enumerate(cuts):
        end = cuts[k + 1][0] if k + 1 < len(cuts) else len(sql)
        text = sql[start:end]
        if name != "PIVOT":
            text = text.lstrip()[len(name) :]
        pieces[name] = pieces.get(name, "") + text
    select = ",\n".join(p for p in (pieces.get("ON"), pieces.get("USING")) if p) or "*"
    out = f"SELECT {select}\nFROM {pieces['PIVOT']}\n"
    for name in ("GROUP", "ORDER", "LIMIT"):
        if name in pieces:
            out += f"{name} {pieces[name]}\n"
    return out.rstrip().rstrip(";")


def _check_tree(tree: Any, tables: frozenset[str]) -> None:
    """Walk the parsed query (iteratively); every table and function must be allowed where it is.

    A CTE's name is visible in the query node that defines it (its body, its other CTEs and every
    subquery inside), never elsewhere; no CTE may take a system catalogue name.
    """
    system = system_names()
    stack: list[tuple[Any, frozenset[str]]] = [(tree, tables)]
    while stack:
        node, visible = stack.pop()
        if isinstance(node, list):
            stack.extend((v, visible) for v in node)
            continue
        if not isinstance(node, dict):
            continue
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict) and cte_map.get("map"):
            names = {str(e.get("key", "")) for e in cte_map["map"]}
            for name in names:
                if name.lower() in system:
                    raise SweepError(
                        f"query must not name a CTE like a system table or function; got {name!r}"
                    )
            # a CTE named like a file ("x.csv") could stand in for a file path: never visible
            visible = visible | {n.lower() for n in names if _IDENTIFIER.match(n)}
        _check_node(node, visible)
        stack.extend((v, visible) for v in node.values() if isinstance(v, (dict, list)))


def _check_node(node: dict, tables: frozenset[str]) -> None:
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


# -- running ---------------------------------------------------------------------------------
def run_bounded(con, fetch: Callable[[Any], Any], timeout: float, what: str) -> Any:
    """``fetch(con)`` in a worker thread; interrupted after ``timeout`` s or by Ctrl-C/SIGTERM."""
    import duckdb

    if not timeout > 0:
        raise SweepError(f"--timeout must be a positive number of seconds; got {timeout!r}")
    box: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: a join cut short by Ctrl-C cannot be trusted

    def work() -> None:
        try:
            box["result"] = fetch(con)
        except BaseException as err:  # handed to the waiting thread
            box["error"] = err
        finally:
            done.set()

    worker = threading.Thread(target=work, name="backdoor-sweep-query", daemon=True)
    deadline = time.monotonic() + timeout
    worker.start()
    try:
        while not done.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                con.interrupt()
                done.wait(10)
                raise SweepError(
                    f"{what} ran longer than --timeout {timeout:g} s and was stopped; "
                    "narrow it or pass a larger --timeout"
                )
            done.wait(min(left, 0.1))  # short waits: the main thread stays free for signals
    except KeyboardInterrupt:
        con.interrupt()
        done.wait(10)
        raise
    if "error" in box:
        err = box["error"]
        if isinstance(err, duckdb.Error):
            raise SweepError(f"{what} failed: {first_line(err)}") from None
        raise err
    return box["result"]


def run_query(
    store: Store,
    sql: str,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    max_rows: int | None = None,
) -> pd.DataFrame:
    """Run one read-only query; a DuckDB error becomes a one-line `SweepError`.

    With ``max_rows`` (the team service) at most that many rows come back and the frame's
    ``attrs["truncated"]`` says whether there were more; the limit is part of the query DuckDB
    plans, so rows past it are not computed when the query allows it.
    """
    import duckdb

    check_query(sql)
    try:
        con = connect(store, memory_limit=memory_limit)
    except duckdb.Error as err:
        raise SweepError(f"store {store.root} could not be read: {first_line(err)}") from None
    try:
        if max_rows is None:
            return run_bounded(con, lambda c: c.execute(sql).fetchdf(), timeout, "query")
        df = run_bounded(con, lambda c: c.sql(sql).limit(max_rows + 1).fetchdf(), timeout, "query")
        truncated = len(df) > max_rows
        df = df.head(max_rows) if truncated else df
        df.attrs["truncated"] = truncated
        return df
    finally:
        close_quietly(con)


def close_quietly(con) -> None:
    """Close a connection; one whose query ignored the interrupt is left to its daemon thread."""
    import duckdb

    with suppress(duckdb.Error):
        con.close()


def first_line(err: Exception) -> str:
    return " ".join(str(err).split("\n")[:2]).strip()
