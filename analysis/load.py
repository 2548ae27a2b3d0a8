"""Load a store into pandas: trials (one row per result) and curves (one row per result and β)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from backdoor_sweep.errors import SweepError
from sweep.schema import TABLES
from sweep.store import Store


def load(
    store: str | Path | Store,
    sweep: str | None = None,
    where: str | None = None,
    table: str = "trials",
) -> pd.DataFrame:
    """Rows of ``table`` for one sweep (or all), optionally filtered by a SQL condition.

    ``where`` is SQL, the language of ``backdoor-sweep query``, run by the same locked-down DuckDB
    (`sweep.query.select_where`): e.g. ``"C IN (0.01, 10) AND gamma = 0.01"``,
    ``"poison_rate BETWEEN 0.05 AND 0.2"``, ``"status <> 'ok'"``.
    """
    st = store if isinstance(store, Store) else Store(store)
    if not st.root.is_dir():
        raise SweepError(f"store must be an existing folder; got {str(st.root)!r} (not found)")
    if table not in TABLES:
        raise SweepError(f"table must be one of {', '.join(TABLES)}; got {table!r}")
    if sweep is not None:
        st.read_meta(sweep)
    names = [sweep] if sweep is not None else st.sweeps()
    if not any(st.parts(name, table) for name in names):
        raise SweepError(
            f"store {st.root} has no {table} rows" + (f" for sweep {sweep!r}" if sweep else "")
        )
    if where:
        from sweep.where import select_where

        return select_where(st, table, where, sweep)
    return st.read_table(table, sweep)
