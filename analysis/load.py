"""Load a store into pandas: trials (one row per result) and curves (one row per result and β)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from backdoor_sweep.errors import SweepError
from sweep.store import Store

#: columns that describe a result but are not configuration values
NON_CONFIG = {
    "sweep",
    "trial_id",
    "result_id",
    "seed",
    "status",
    "error",
    "node_id",
    "started_at",
    "finished_at",
    "asr_definition",
}


def load(
    store: str | Path | Store,
    sweep: str | None = None,
    where: str | None = None,
    table: str = "trials",
) -> pd.DataFrame:
    """Rows of ``table`` for one sweep (or all), optionally filtered by a pandas ``where`` query.

    ``where`` uses pandas' ``DataFrame.query`` syntax, e.g. ``"C in (0.01, 10) and gamma == 0.01"``.
    """
    st = store if isinstance(store, Store) else Store(store)
    if not st.root.is_dir():
        raise SweepError(f"store must be an existing folder; got {str(st.root)!r} (not found)")
    df = st.read_table(table, sweep)
    if df.empty:
        raise SweepError(
            f"store {st.root} has no {table} rows" + (f" for sweep {sweep!r}" if sweep else "")
        )
    if where:
        df = filter_rows(df, where)
    return df


def filter_rows(df: pd.DataFrame, where: str) -> pd.DataFrame:
    expr = where.replace(" AND ", " and ").replace(" OR ", " or ").replace(" IN ", " in ")
    expr = _sql_equals(expr)
    try:
        return df.query(expr)
    except Exception as err:  # pandas raises many types for a bad expression
        raise SweepError(
            f"--where must be a condition on the columns ({', '.join(map(str, df.columns[:12]))}…); got {where!r} ({err})"
        ) from None


def _sql_equals(expr: str) -> str:
    """Accept SQL's single '=' as well as pandas' '=='."""
    import re

    return re.sub(r"(?<![<>=!])=(?!=)", "==", expr)


def config_columns(df: pd.DataFrame, metrics: set[str] | None = None) -> list[str]:
    """Columns that are configuration values (grid axes and fixed parameters), not metrics."""
    from analysis.aggregate import METRICS

    metrics = metrics or METRICS
    return [
        c
        for c in df.columns
        if c not in NON_CONFIG and c not in metrics and not c.endswith("_version")
    ]
