"""Check a store: is every file ours, readable, consistent with its sweep's plan, and counted once?

`verify_store` walks every sweep folder and reports *problems* (the store is wrong: a reader would
fail or a count would be off) and *notes* (worth knowing, nothing wrong: an unfinished sweep, rows
with ``status = "error"``). Each problem comes with its repair (`Fix`), which
``backdoor-sweep verify --repair`` carries out (`sweep.repair`); the report ends with that command
and the ``resume`` commands that then recompute what was moved aside. Problems found:

- files that are not ours: anything in ``trials/``/``curves/``/``dynamics/`` that is not
  ``part-<id>.parquet``, anything in a sweep folder besides ``sweep.json`` and those folders,
  symbolic links (they may point outside the store), folders with part files but no ``sweep.json``;
- temporary files (``.tmp-*``) a killed writer left behind;
- unreadable ``sweep.json`` or part files, parts without the key columns, parts whose columns or
  types differ from the sweep's schema (`sweep.schema`) or from each other;
- parts whose ``sweep``/``trial_id`` columns disagree with their folder and file name;
- trial ids not in the plan of the sweep's spec, result ids not in their trial, a trial part that
  lacks some of its trial's results, rows whose configuration differs from the plan's;
- result ids stored more than once; curves/dynamics parts without a trials part, their rows of results
  that are not in the trials table;
- a sweep whose ``sweep.json`` says finished while trials are missing.
"""

from __future__ import annotations

import math
import os
import shlex
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from backdoor_sweep.errors import SweepError
from sweep.schema import NOT_COLUMNS, SCHEMA, TABLES, schema_difference, spec_schemas
from sweep.store import PART_NAME, Store

SWEEP_ENTRIES = {"sweep.json", "searcher.pkl", *TABLES}  # searcher.pkl: an Optuna search's state
#: what `sweep.repair` does about a problem
ACTIONS = ("delete", "set_aside", "rewrite", "mark_incomplete", "by_hand")


@dataclass(frozen=True)
class Fix:
    """The repair of one problem: delete a temporary file, set a file or folder aside (moved
    under ``<store>/.set-aside/``, nothing is deleted), rewrite a part with the sweep's schema,
    mark a sweep incomplete, or (``by_hand``) what only a person can decide."""

    action: str
    path: Path
    sweep: str | None = None
    table: str | None = None


@dataclass
class Report:
    """What `verify_store` found; ``ok`` when there is no problem (notes are fine)."""

    root: Path
    sweeps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    #: sweeps with trials to (re)compute: `backdoor-sweep resume` finishes them
    unfinished: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str, fix: Fix) -> None:
        self.problems.append(text)
        if fix not in self.fixes:
            self.fixes.append(fix)
        if fix.sweep is not None and fix.action in ("set_aside", "mark_incomplete", "rewrite"):
            self.unfinished.add(fix.sweep)


def verify_store(store: Store) -> Report:
    """Check every sweep of ``store``; see the module docstring for what is checked."""
    report = Report(store.root)
    if not store.root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(store.root)!r} (not found)")
    for entry in sorted(store.root.iterdir()):
        if entry.name.startswith("."):  # the locks, what a repair set aside
            continue
        if entry.is_symlink():
            report.problem(
                f"{entry}: a symbolic link (to {os.readlink(entry)}) among the sweep folders",
                Fix("set_aside", entry),
            )
        elif entry.is_dir() and (entry / "sweep.json").is_file():
            report.sweeps.append(entry.name)
            _verify_sweep(store, entry.name, report)
        elif entry.is_dir() and any((entry / t).is_dir() for t in TABLES):
            report.problem(
                f"{entry}: has part folders but no sweep.json (an orphaned sweep)",
                Fix("set_aside", entry),
            )
        else:
            report.notes.append(f"{entry}: not a sweep folder; ignored")
    return report


def _verify_sweep(store: Store, name: str, report: Report) -> None:
    folder = store.sweep_dir(name)
    try:
        meta = store.read_meta(name)
    except SweepError as err:
        report.problem(str(err), Fix("by_hand", folder / "sweep.json", name))
        return
    spec = _spec(meta, folder / "sweep.json", name, report)
    schemas = spec_schemas(spec) if spec is not None else None
    locked = store.is_locked(name)  # a run is writing it: temporary files are in flight
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".tmp-"):
            if not locked:
                report.problem(
                    f"{entry}: temporary file left by an interrupted write",
                    Fix("delete", entry, name),
                )
        elif entry.name not in SWEEP_ENTRIES or entry.is_symlink():
            report.problem(
                f"{entry}: not a file of this store (a sweep folder holds sweep.json, trials/, "
                "curves/, dynamics/ and an Optuna search's searcher.pkl)",
                Fix("set_aside", entry, name),
            )
    tables = {
        t: _read_parts(folder / t, t, name, report, locked, schemas and schemas[t]) for t in TABLES
    }
    plan = _plan(spec, tables["trials"]) if spec is not None else None
    unfinished = locked or meta.get("status") != "finished"

    trial_rows = tables["trials"]
    stored = Counter(rid for rows in trial_rows.values() for rid in rows["result_id"])
    for rid, n in sorted(stored.items()):
        if n > 1:
            holders = [p for p, rows in trial_rows.items() if rid in rows["result_id"]]
            text = f"{folder}: result {rid} is stored {n} times (in {', '.join(p.name for p in holders)})"
            for p in holders:
                report.problem(text, Fix("set_aside", p, name, "trials"))
    trial_ids = {p.stem[len("part-") :] for p in trial_rows}
    for table, path, rows in [
        (t, p, r) for t in TABLES if t != "trials" for p, r in tables[t].items()
    ]:
        tid = path.stem[len("part-") :]
        if tid not in trial_ids and unfinished and plan is not None and tid in plan:
            # a trial's curves/dynamics are written just before its trials part: a run stopped
            # between them leaves this, and finishing the trial (resume) writes all again
            report.notes.append(f"{path}: {table} of a trial whose trials part is not written yet")
        elif tid not in trial_ids:
            report.problem(
                f"{path}: {table} of trial {tid} that has no trials part (an orphan)",
                Fix("set_aside", path, name, table),
            )
        elif missing := set(rows["result_id"]) - set(stored):
            report.problem(
                f"{path}: {table} rows of {len(missing)} result(s) not in the trials table",
                Fix("set_aside", path, name, table),
            )
    if plan is not None:
        _check_against_plan(plan, trial_rows, name, report)
        todo = set(plan) - trial_ids
        if todo and meta.get("status") == "finished" and not locked:
            report.problem(
                f"{folder}: sweep.json says finished but {len(todo)} of {len(plan)} trials have no part",
                Fix("mark_incomplete", folder / "sweep.json", name),
            )
        elif todo:
            state = "being run now" if locked else f"unfinished: `{_resume(store, name)}`"
            report.notes.append(
                f"{name}: {len(plan) - len(todo)} of {len(plan)} trials stored ({state})"
            )
            if not locked:
                report.unfinished.add(name)
    n_error = sum(rows["status"].count("error") for rows in trial_rows.values())
    if n_error:
        report.notes.append(f"{name}: {n_error} result(s) with status error (see the error column)")


def _resume(store: Store, name: str) -> str:
    return f"backdoor-sweep resume {name} --store {shlex.quote(str(store.root))}"


def _spec(meta: dict, path: Path, name: str, report: Report):
    """The spec stored in sweep.json, validated (None, and a problem, if it no longer is)."""
    from sweep.spec import parse_spec

    try:
        spec = parse_spec(meta["spec"], source=str(path))
    except SweepError as err:
        report.problem(
            f"{path}: its spec no longer validates, so the plan cannot be checked ({err})",
            Fix("by_hand", path, name),
        )
        return None
    if spec.name != path.parent.name:
        report.problem(
            f"{path}: names sweep {spec.name!r} but lies in folder {path.parent.name!r}",
            Fix("by_hand", path, name),
        )
    return spec


def _plan(spec, trial_rows: dict[Path, dict[str, list]]) -> dict[str, dict[str, dict]]:
    """trial id -> result id -> result. A search that is not one fixed plan (Optuna, a slope
    screen) is planned from its stored rows as well (`sweep.searching.stored_plans`)."""
    import pandas as pd

    from sweep.searching import stored_plans

    rows = pd.DataFrame()
    if spec.search.staged and trial_rows:
        rows = pd.concat([pd.DataFrame(r) for r in trial_rows.values()], ignore_index=True)
    return {p.trial_id: {u["result_id"]: u for u in p.results} for p in stored_plans(spec, rows)}


def _read_parts(
    folder: Path,
    table: str,
    sweep: str,
    report: Report,
    locked: bool,
    schema: pa.Schema | None,
) -> dict[Path, dict[str, list]]:
    """Each readable part's rows as columns; problems for foreign, corrupt or inconsistent files."""
    out: dict[Path, dict[str, list]] = {}
    if folder.is_symlink():
        report.problem(
            f"{folder}: a symbolic link (to {os.readlink(folder)}), not a folder of this store",
            Fix("set_aside", folder, sweep, table),
        )
        return out
    if not folder.is_dir():
        return out
    schemas: dict[Path, pa.Schema] = {}
    for path in sorted(folder.iterdir()):
        m = PART_NAME.match(path.name)
        if path.name.startswith(".tmp-"):
            if not locked:
                report.problem(
                    f"{path}: temporary file left by an interrupted write",
                    Fix("delete", path, sweep, table),
                )
            continue
        if path.is_symlink():
            report.problem(
                f"{path}: a symbolic link (to {os.readlink(path)}), not a part file of this store",
                Fix("set_aside", path, sweep, table),
            )
            continue
        if m is None or not path.is_file():
            report.problem(
                f"{path}: not a part file (expected {table}/part-<trial id>.parquet)",
                Fix("set_aside", path, sweep, table),
            )
            continue
        try:
            tbl = pq.read_table(path)
        except (pa.ArrowException, OSError) as err:
            report.problem(
                f"{path}: corrupt or not Parquet ({str(err).splitlines()[0] if str(err) else type(err).__name__})",
                Fix("set_aside", path, sweep, table),
            )
            continue
        missing = [c for c in SCHEMA[table].required if c not in tbl.column_names]
        if missing:
            report.problem(
                f"{path}: not a {table} part (no column {', '.join(missing)})",
                Fix("set_aside", path, sweep, table),
            )
            continue
        schemas[path] = tbl.schema
        rows = tbl.to_pydict()
        tid = m.group(1)
        if set(rows["sweep"]) - {sweep}:
            report.problem(
                f"{path}: rows of sweep(s) {sorted(set(rows['sweep']) - {sweep})} in the folder of {sweep!r}",
                Fix("set_aside", path, sweep, table),
            )
        if set(rows["trial_id"]) - {tid}:
            report.problem(
                f"{path}: rows of trial(s) {sorted(set(rows['trial_id']) - {tid})} in the part of trial {tid}",
                Fix("set_aside", path, sweep, table),
            )
        if schema is not None and (diff := schema_difference(tbl.schema, schema)):
            action = "set_aside" if any(d.startswith("column ") for d in diff) else "rewrite"
            report.problem(
                f"{path}: differs from the sweep's {table} schema: {'; '.join(diff[:3])}"
                + (f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""),
                Fix(action, path, sweep, table),
            )
        out[path] = rows
    _check_types(schemas, sweep, table, report)
    return out


def _check_types(schemas: dict[Path, pa.Schema], sweep: str, table: str, report: Report) -> None:
    """Each column must have one type across a table's parts: name the parts that differ."""
    kinds: dict[str, Counter] = {}
    for schema in schemas.values():
        for f in schema:
            if not pa.types.is_null(f.type):  # a column of nothing but nulls fits any type
                kinds.setdefault(f.name, Counter())[_kind(f.type)] += 1
    for path, schema in schemas.items():
        for f in schema:
            if f.name not in kinds or pa.types.is_null(f.type):
                continue
            usual, n = kinds[f.name].most_common(1)[0]
            if _kind(f.type) != usual:
                report.problem(
                    f"{path}: column {f.name} is {f.type} here but {usual} in {n} other part(s)",
                    Fix("rewrite", path, sweep, table),
                )


def _kind(t: pa.DataType) -> str:
    """Types that read back as the same kind of value count as one."""
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return str(t)


def _check_against_plan(
    plan: dict[str, dict[str, dict]],
    trial_rows: dict[Path, dict[str, list]],
    sweep: str,
    report: Report,
) -> None:
    for path, rows in trial_rows.items():
        tid = path.stem[len("part-") :]
        fix = Fix("set_aside", path, sweep, "trials")
        results = plan.get(tid)
        if results is None:
            report.problem(f"{path}: trial {tid} is not in the plan of this sweep's spec", fix)
            continue
        ids = rows["result_id"]
        unknown = [r for r in ids if r not in results]
        if unknown:
            report.problem(
                f"{path}: {len(unknown)} result id(s) not in trial {tid} of the plan, e.g. {unknown[0]}",
                fix,
            )
        if lacking := set(results) - set(ids):
            report.problem(
                f"{path}: lacks {len(lacking)} of the trial's {len(results)} results", fix
            )
        for i, rid in enumerate(ids):
            if rid in results and (diff := _config_mismatch(results[rid], rows, i)):
                report.problem(f"{path}: result {rid} has {diff} but its id says otherwise", fix)
                break


def _config_mismatch(result: dict[str, Any], rows: dict[str, list], i: int) -> str | None:
    for key, want in result.items():
        if key in NOT_COLUMNS:
            continue
        if key not in rows:
            return f"no column {key}"
        if not _same(rows[key][i], want):
            return f"{key}={rows[key][i]!r} (the plan: {want!r})"
    return None


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return math.isclose(float(got), float(want), rel_tol=1e-12, abs_tol=0.0) or (
            got != got and want != want
        )
    if want is None:
        return got is None or (isinstance(got, float) and math.isnan(got))
    return got == want or str(got) == str(want)


def format_report(report: Report) -> list[str]:
    """The lines `backdoor-sweep verify` prints: problems, notes, then the repairing commands."""
    lines = [f"problem: {p}" for p in report.problems] + [f"note: {n}" for n in report.notes]
    n = len(report.sweeps)
    if report.ok:
        lines.append(f"ok: {report.root} holds {n} sweep(s) and no problem")
    from sweep.repair import repair_command

    return lines + repair_command(report)
