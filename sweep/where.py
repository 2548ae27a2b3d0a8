"""The one filter language of every command's ``--where``: a SQL condition over a store table.

The condition is checked as a condition — wrapped as ``SELECT * FROM trials WHERE (…)``, it must
pass `sweep.query.check_query` (no file, no system table, no configuration) and parse to exactly
the tree of that query with some condition (so ``1=1) UNION SELECT … WHERE (1=1`` or a trailing
``ORDER BY`` is refused) — and then run by the same locked-down, time- and memory-bounded DuckDB as
``backdoor-sweep query``, over the part files of one sweep (or every sweep).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from backdoor_sweep.errors import SweepError
from sweep.query import (
    DEFAULT_MEMORY_LIMIT,
    DEFAULT_TIMEOUT_S,
    check_query,
    close_quietly,
    connect,
    first_line,
    parse_tree,
    parser_connection,
    run_bounded,
)
from sweep.schema import TABLES
from sweep.store import Store

_WHERE_EXAMPLE = 'e.g. "C = 10 AND poison_rate BETWEEN 0.05 AND 0.2"'


def check_where(where: str) -> None:
    """Refuse a ``--where`` that is anything but one SQL condition over the store's tables."""
    if not isinstance(where, str) or not where.strip():
        raise SweepError(f"--where must be a SQL condition, {_WHERE_EXAMPLE}; got {where!r}")
    sql = _where_sql("trials", where)
    try:
        check_query(sql)
    except SweepError as err:
        raise SweepError(
            f"--where must be a SQL condition, {_WHERE_EXAMPLE}; got {where!r} ({err})"
        ) from None
    with parser_connection() as parser:
        tree = parse_tree(parser, sql)
        template = parse_tree(parser, _where_sql("trials", "true"))
    if _shape(tree) != _shape(template):  # e.g. "1=1) UNION SELECT … --" or "true ORDER BY 1"
        raise SweepError(
            f"--where must be one SQL condition, {_WHERE_EXAMPLE}; got {where!r} "
            "(it reaches beyond the condition)"
        )


def _where_sql(table: str, where: str) -> str:
    return f"SELECT * FROM {table} WHERE (\n{where}\n)"


def _shape(tree: dict) -> Any:
    """The parse tree without its condition and source positions (what every filter shares)."""
    statements = tree.get("statements") or [{}]
    node = dict(statements[0].get("node") or {})
    node.pop("where_clause", None)
    return _strip(node)


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if not k.startswith("query_location")}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def select_where(
    store: Store,
    table: str,
    where: str,
    sweep: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> pd.DataFrame:
    """The rows of ``table`` (of ``sweep``, or of every sweep) for which the SQL condition
    ``where`` is true, run by the locked-down DuckDB of `run_query` (types as pandas reads the
    Parquet parts)."""
    import duckdb

    if table not in TABLES:
        raise SweepError(f"table must be one of {', '.join(TABLES)}; got {table!r}")
    check_where(where)
    con = connect(store, [sweep] if sweep is not None else None, memory_limit)
    try:
        data = run_bounded(
            con,
            lambda c: c.sql(_where_sql(table, where)).to_arrow_table(),
            timeout,
            f"--where {where!r}",
        )
    except duckdb.Error as err:
        raise SweepError(f"--where {where!r} failed: {first_line(err)}") from None
    finally:
        close_quietly(con)
    return data.to_pandas()
