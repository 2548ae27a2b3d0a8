"""What a store holds, sweep by sweep: what ``backdoor-sweep ls`` prints.

A sweep's state comes from its ``sweep.json`` and its lock: ``running (pid N on HOST)`` while a
driver holds the lock, ``interrupted`` when ``sweep.json`` still says running but no driver holds
the lock (it was killed: ``resume`` finishes it), otherwise what ``sweep.json`` says (``finished``,
``incomplete``). A sweep that cannot be read (a corrupt part file or ``sweep.json``) is listed as
``damaged`` and its problem is returned, so one bad file never hides the other sweeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from backdoor_sweep.errors import SweepError
from sweep.store import Store, read_part


@dataclass
class SweepLine:
    """One sweep as ``ls`` shows it."""

    name: str
    state: str
    counts: dict[str, int] = field(default_factory=dict)
    expected: Any = "?"
    size: int = 0
    created: str = ""
    finished: str = ""
    wall_seconds: float | None = None


def sweep_state(store: Store, name: str, meta: dict[str, Any]) -> str:
    """``running (pid N on HOST)``, ``interrupted`` or the status in ``sweep.json``."""
    holder = store.lock_holder(name)
    if holder is not None:
        return f"running ({holder})"
    status = str(meta.get("status", "?"))
    return "interrupted" if status == "running" else status


def inventory(store: Store) -> tuple[list[SweepLine], list[str]]:
    """Every sweep folder of the store as a `SweepLine`, and one line per problem found."""
    names, problems = store.scan()
    lines = []
    for name in names:
        folder = store.sweep_dir(name)
        size = sum(
            p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
        )
        try:
            meta = store.read_meta(name)
            counts = _status_counts(store, name)
        except SweepError as err:
            problems.append(str(err))
            lines.append(SweepLine(name, "damaged", size=size))
            continue
        wall = meta.get("wall_seconds")
        lines.append(
            SweepLine(
                name,
                sweep_state(store, name, meta),
                counts,
                meta.get("n_results", "?"),
                size,
                str(meta.get("created_at", ""))[:19].replace("T", " "),
                str(meta.get("finished_at") or "")[:19].replace("T", " "),
                float(wall) if isinstance(wall, (int, float)) else None,
            )
        )
    return lines, problems


def _status_counts(store: Store, name: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for part in store.parts(name, "trials"):
        try:
            status = pq.read_table(part, columns=["status"]).column("status").to_pylist()
        except (pa.ArrowException, OSError):  # a corrupt part: read_part names it in one line
            status = read_part(part)["status"].tolist()
        for v in status:
            counts[v] = counts.get(v, 0) + 1
    return counts
