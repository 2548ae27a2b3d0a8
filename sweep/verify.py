"""Check a store: is every file ours, readable, consistent with its sweep's plan, and counted once?

`verify_store` walks every sweep folder and reports *problems* (the store is wrong: a reader would
fail or a count would be off) and *notes* (worth knowing, nothing wrong: an unfinished sweep, rows
with ``status = "error"``). Problems found:

- files that are not ours: anything in ``trials/``/``curves/``/``dynamics/`` that is not
  ``part-<id>.parquet``, anything in a sweep folder besides ``sweep.json`` and those folders;
- temporary files (``.tmp-*``) a killed writer left behind (``resume`` removes them);
- unreadable ``sweep.json`` or part files, parts without the key columns, columns whose type
  differs between parts of one table;
- parts whose ``sweep``/``trial_id`` columns disagree with their folder and file name;
- trial ids not in the plan of the sweep's spec, result ids not in their trial, a trial part that
  lacks some of its trial's results, rows whose configuration differs from the plan's;
- result ids stored more than once; curves/dynamics parts without a trials part, their rows of results
  that are not in the trials table;
- a sweep whose ``sweep.json`` says finished while trials are missing.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from backdoor_sweep.errors import SweepError
from sweep.store import CACHE_DIR, KEY_COLUMNS, LOCK_DIR, PART_NAME, TABLES, Store

SWEEP_ENTRIES = {"sweep.json", *TABLES}
#: result keys that are not columns of a trials row
_NOT_COLUMNS = {"curves", "result_id"}


@dataclass
class Report:
    """What `verify_store` found; ``ok`` when there is no problem (notes are fine)."""

    root: Path
    sweeps: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(store: Store) -> Report:
    """Check every sweep of ``store``; see the module docstring for what is checked."""
    report = Report(store.root)
    if not store.root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(store.root)!r} (not found)")
    for entry in sorted(store.root.iterdir()):
        if entry.name in (LOCK_DIR, CACHE_DIR):
            continue
        if entry.is_dir() and (entry / "sweep.json").is_file():
            report.sweeps.append(entry.name)
            _verify_sweep(store, entry.name, report)
        elif entry.is_dir() and any((entry / t).is_dir() for t in TABLES):
            report.problems.append(
                f"{entry}: has part folders but no sweep.json (an orphaned sweep)"
            )
        else:
            report.notes.append(f"{entry}: not a sweep folder; ignored")
    return report


def _verify_sweep(store: Store, name: str, report: Report) -> None:
    problems = report.problems
    folder = store.sweep_dir(name)
    try:
        meta = store.read_meta(name)
    except SweepError as err:
        problems.append(str(err))
        return
    plan = _plan(meta, folder / "sweep.json", problems)
    locked = store.is_locked(name)  # a run is writing it: temporary files are in flight
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".tmp-") and not locked:
            problems.append(
                f"{entry}: temporary file left by an interrupted write (`backdoor-sweep resume {name}` removes it)"
            )
        elif entry.name not in SWEEP_ENTRIES and not entry.name.startswith(".tmp-"):
            problems.append(
                f"{entry}: not a file of this store (a sweep folder holds sweep.json, trials/, curves/, dynamics/)"
            )
    tables = {t: _read_parts(folder / t, t, name, problems, locked) for t in TABLES}
    unfinished = locked or meta.get("status") != "finished"

    trial_rows = tables["trials"]
    stored = Counter(rid for rows in trial_rows.values() for rid in rows["result_id"])
    for rid, n in sorted(stored.items()):
        if n > 1:
            where = [str(p.name) for p, rows in trial_rows.items() if rid in rows["result_id"]]
            problems.append(f"{folder}: result {rid} is stored {n} times (in {', '.join(where)})")
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
            problems.append(f"{path}: {table} of trial {tid} that has no trials part (an orphan)")
        elif missing := set(rows["result_id"]) - set(stored):
            problems.append(
                f"{path}: {table} rows of {len(missing)} result(s) not in the trials table"
            )
    if plan is not None:
        _check_against_plan(plan, trial_rows, problems)
        todo = set(plan) - trial_ids
        if todo and meta.get("status") == "finished" and not locked:
            problems.append(
                f"{folder}: sweep.json says finished but {len(todo)} of {len(plan)} trials have no part"
            )
        elif todo:
            state = "being run now" if locked else f"unfinished: `backdoor-sweep resume {name}`"
            report.notes.append(
                f"{name}: {len(plan) - len(todo)} of {len(plan)} trials stored ({state})"
            )
    n_error = sum(rows["status"].count("error") for rows in trial_rows.values())
    if n_error:
        report.notes.append(f"{name}: {n_error} result(s) with status error (see the error column)")


def _plan(meta: dict, path: Path, problems: list[str]) -> dict[str, dict[str, dict]] | None:
    """trial id -> result id -> result, from the spec stored in sweep.json (None if unusable)."""
    from sweep.plan import plan_trials
    from sweep.spec import parse_spec

    try:
        spec = parse_spec(meta["spec"], source=str(path))
    except SweepError as err:
        problems.append(
            f"{path}: its spec no longer validates, so the plan cannot be checked ({err})"
        )
        return None
    if spec.name != path.parent.name:
        problems.append(
            f"{path}: names sweep {spec.name!r} but lies in folder {path.parent.name!r}"
        )
    return {p.trial_id: {u["result_id"]: u for u in p.results} for p in plan_trials(spec)}


def _read_parts(
    folder: Path, table: str, sweep: str, problems: list[str], locked: bool
) -> dict[Path, dict[str, list]]:
    """Each readable part's rows as columns; problems for foreign, corrupt or inconsistent files."""
    out: dict[Path, dict[str, list]] = {}
    if not folder.is_dir():
        return out
    schemas: dict[Path, pa.Schema] = {}
    for path in sorted(folder.iterdir()):
        m = PART_NAME.match(path.name)
        if path.name.startswith(".tmp-"):
            if not locked:
                problems.append(
                    f"{path}: temporary file left by an interrupted write (`backdoor-sweep resume {sweep}` removes it)"
                )
            continue
        if m is None or not path.is_file():
            problems.append(f"{path}: not a part file (expected {table}/part-<trial id>.parquet)")
            continue
        try:
            tbl = pq.read_table(path)
        except (pa.ArrowException, OSError) as err:
            problems.append(
                f"{path}: corrupt or not Parquet ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
            )
            continue
        missing = [c for c in KEY_COLUMNS[table] if c not in tbl.column_names]
        if missing:
            problems.append(f"{path}: not a {table} part (no column {', '.join(missing)})")
            continue
        schemas[path] = tbl.schema
        rows = tbl.to_pydict()
        tid = m.group(1)
        if set(rows["sweep"]) - {sweep}:
            problems.append(
                f"{path}: rows of sweep(s) {sorted(set(rows['sweep']) - {sweep})} in the folder of {sweep!r}"
            )
        if set(rows["trial_id"]) - {tid}:
            problems.append(
                f"{path}: rows of trial(s) {sorted(set(rows['trial_id']) - {tid})} in the part of trial {tid}"
            )
        out[path] = rows
    _check_types(schemas, problems)
    return out


def _check_types(schemas: dict[Path, pa.Schema], problems: list[str]) -> None:
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
                problems.append(
                    f"{path}: column {f.name} is {f.type} here but {usual} in {n} other part(s)"
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
    plan: dict[str, dict[str, dict]], trial_rows: dict[Path, dict[str, list]], problems: list[str]
) -> None:
    for path, rows in trial_rows.items():
        tid = path.stem[len("part-") :]
        results = plan.get(tid)
        if results is None:
            problems.append(f"{path}: trial {tid} is not in the plan of this sweep's spec")
            continue
        ids = rows["result_id"]
        unknown = [r for r in ids if r not in results]
        if unknown:
            problems.append(
                f"{path}: {len(unknown)} result id(s) not in trial {tid} of the plan, e.g. {unknown[0]}"
            )
        if lacking := set(results) - set(ids):
            problems.append(f"{path}: lacks {len(lacking)} of the trial's {len(results)} results")
        for i, rid in enumerate(ids):
            if rid in results and (diff := _config_mismatch(results[rid], rows, i)):
                problems.append(f"{path}: result {rid} has {diff} but its id says otherwise")
                break


def _config_mismatch(result: dict[str, Any], rows: dict[str, list], i: int) -> str | None:
    for key, want in result.items():
        if key in _NOT_COLUMNS:
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
    """The lines `backdoor-sweep verify` prints."""
    lines = [f"problem: {p}" for p in report.problems] + [f"note: {n}" for n in report.notes]
    n = len(report.sweeps)
    if report.ok:
        lines.append(f"ok: {report.root} holds {n} sweep(s) and no problem")
    return lines
