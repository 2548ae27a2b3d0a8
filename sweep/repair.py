"""Repair what `verify_store` found, losing nothing: ``backdoor-sweep verify --repair``.

Each problem's `Fix` is carried out under the sweep's lock (a sweep being run is left alone):

- ``delete``: a temporary file a killed writer left (half a file, never a result);
- ``set_aside``: a foreign, corrupt, duplicated or inconsistent file (or a folder without
  ``sweep.json``, or a symbolic link) moves to ``<store>/.set-aside/<UTC time>/`` under its path
  in the store — readers skip hidden folders, and the trial is recomputed by ``resume``;
- ``rewrite``: a part with the right columns in other types is rewritten with the sweep's schema
  (values cast safely; a value that does not fit sets the part aside instead);
- ``mark_incomplete``: a ``sweep.json`` that says finished while trials are missing says
  ``incomplete``, so ``resume`` finishes it;
- ``by_hand``: left alone and named (a corrupt ``sweep.json`` has lost the spec).
"""

from __future__ import annotations

import os
import shlex
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from backdoor_sweep.errors import SweepError
from sweep.store import Store, atomic_write_bytes
from sweep.verify import Fix, Report

SET_ASIDE = ".set-aside"


def repair_store(store: Store, report: Report) -> list[str]:
    """Carry out the fixes of ``report``; one line per thing done or left."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = store.root / SET_ASIDE / stamp
    done: list[str] = []
    sweeps = sorted({f.sweep for f in report.fixes if f.sweep is not None})
    with ExitStack() as locks:
        busy = set()
        for name in sweeps:
            try:
                locks.enter_context(store.lock(name))
            except SweepError as err:
                busy.add(name)
                done.append(f"left: {err}")
        for fix in report.fixes:
            if fix.sweep in busy:
                continue
            if not os.path.lexists(fix.path) and fix.action != "by_hand":
                continue  # already gone (a folder set aside took it along)
            done.append(_apply(store, fix, aside))
    return done


def _apply(store: Store, fix: Fix, aside: Path) -> str:
    if fix.action == "delete":
        fix.path.unlink(missing_ok=True)
        return f"deleted: {fix.path}"
    if fix.action == "set_aside":
        return _set_aside(store, fix.path, aside)
    if fix.action == "rewrite":
        try:
            data = _cast(pq.read_table(fix.path), store.schema(fix.sweep, fix.table))
            sink = pa.BufferOutputStream()
            pq.write_table(data, sink)
            atomic_write_bytes(fix.path, sink.getvalue().to_pybytes())
        except (SweepError, pa.ArrowException, OSError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            return _set_aside(store, fix.path, aside) + f" (it could not be rewritten: {first})"
        return f"rewrote with the sweep's schema: {fix.path}"
    if fix.action == "mark_incomplete":
        store.update_meta(fix.sweep, status="incomplete")
        return f"marked incomplete: {fix.path}"
    return f"left for a person: {fix.path}"


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns: each cast safely (a value that does not fit
    raises), a missing one null. Parts with a column the schema lacks are set aside instead."""
    columns = [
        pc.cast(table.column(f.name), f.type, safe=True)
        if f.name in table.column_names
        else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _set_aside(store: Store, path: Path, aside: Path) -> str:
    target = aside / path.relative_to(store.root)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)  # a symbolic link moves as a link; its target is never touched
    return f"set aside: {path} -> {target}"


def repair_command(report: Report) -> list[str]:
    """The commands that repair what ``report`` found, as they can be pasted, and what is left
    to a person (empty when there is nothing to do)."""
    store = shlex.quote(str(report.root))
    lines = []
    if any(f.action != "by_hand" for f in report.fixes):
        lines.append(f"repair: backdoor-sweep verify --repair --store {store}")
    for name in sorted(report.unfinished):
        lines.append(f"then: backdoor-sweep resume {name} --store {store}")
    for f in report.fixes:
        if f.action == "by_hand":
            lines.append(
                f"by hand: {f.path} needs a person (restore it from a copy, or move the sweep folder out of the store)"
            )
    if lines and not report.problems:  # only unfinished sweeps: finishing them is all there is
        lines = [line.replace("then: ", "finish: ") for line in lines]
    return lines
