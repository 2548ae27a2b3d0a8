"""The result store: one folder per sweep, Parquet part files written atomically.

Layout under the store root::

    <store>/<sweep>/sweep.json                    spec, grid size, status, timings, versions
    <store>/<sweep>/trials/part-<trial_id>.parquet one row per (configuration, seed)
    <store>/<sweep>/curves/part-<trial_id>.parquet one row per (result, β) when curves are on
    <store>/<sweep>/dynamics/part-<trial_id>.parquet one row per (result, epoch) when
                                                   explain.dynamics is on (networks)

Each part file holds every result of one Ray Tune trial and is written by the driver to a
temporary file in the same folder, then renamed: a reader never sees half a file, and a trial
written twice replaces itself instead of duplicating rows. Every part of a table is written with
the sweep's one schema for that table (`sweep.schema`), so any Parquet reader can read the folder
as one table. A sweep is resumable because the trial ids are a hash of the trial's
configurations: the ids already on disk are done. A write that fails (a full disk, a folder that
became read-only) leaves no temporary file and raises one `SweepError` line.

Readers refuse what they cannot trust, naming the file: a part that is not Parquet, a Parquet file
without the store's key columns, a file in ``trials/``/``curves/`` that is not a part at all, a
symbolic link (it could point outside the store), and a folder with part files but no
``sweep.json``. Hidden files (a ``.tmp-*`` left by a killed writer) are skipped; ``backdoor-sweep
verify`` reports them. A run holds an exclusive lock on its sweep (``<store>/.locks/<sweep>.lock``,
``flock``), so two runs of one sweep name cannot interleave while runs of different sweeps share
the store freely.
What trials compute once for every sweep (trained generators) lives in ``<store>/.cache``.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from backdoor_sweep.errors import SweepError
from sweep.schema import SCHEMA, SWEEP_NAME, TABLES

PART_PREFIX = "part-"
PART_NAME = re.compile(r"^part-([0-9a-f]+)\.parquet$")
LOCK_DIR = ".locks"
#: the team service's own files (tokens, who submitted what, its runners' logs); not a sweep
SERVICE_DIR = ".service"
#: what trials compute once and reuse across sweeps (e.g. trained generators); see `Store.cache_dir`
CACHE_DIR = ".cache"
#: (path, mtime_ns, size) of part files whose footer and key columns were already checked
_checked: set[tuple[str, int, int]] = set()
_VERIFY = "move it out of the store or run `backdoor-sweep verify`"


def check_sweep_name(name: str) -> str:
    """``name`` if it is a sweep name (a folder of the store, never a path); else one line."""
    if not isinstance(name, str) or not SWEEP_NAME.match(name):
        raise SweepError(
            "sweep name must be letters, digits, '_', '.' or '-' (not starting with '.' or "
            f"'-', at most 100 characters, no '/'); got {str(name)[:120]!r}"
        )
    return name


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it and rename it over ``path``.

    On any failure the temporary file is removed and one `SweepError` line names the file and
    the reason (e.g. no space left on device).
    """
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise SweepError(f"store file {path} could not be written ({_reason(err)})") from None


def _reason(err: OSError) -> str:
    return err.strerror or str(err) or type(err).__name__


def claim_lock(fh) -> str | None:
    """Take an exclusive ``flock`` on the open file ``fh`` without waiting and write this
    process into it (``"pid N on HOST"``): None when taken, else what the holder wrote.

    The kernel releases the lock when ``fh`` is closed or its process dies, even by SIGKILL, so
    a crashed holder never leaves a stale lock behind.
    """
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        return fh.read().strip() or "another process"
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {os.uname().nodename}")
    fh.flush()
    return None


class Store:
    """A folder of sweeps. Cheap to construct; touches the disk only when asked."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._schemas: dict[str, dict[str, pa.Schema]] = {}

    # -- sweeps -------------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        """``<store>/.cache``: trained generators and the like, shared by every sweep of the store."""
        return self.root / CACHE_DIR

    def sweep_dir(self, sweep: str) -> Path:
        return self.root / check_sweep_name(sweep)

    def scan(self) -> tuple[list[str], list[str]]:
        """(the sweeps, problems): folders with a ``sweep.json``, and one line for each folder
        with part folders but no ``sweep.json`` and each symbolic link among the sweep folders."""
        if not self.root.is_dir():
            return [], []
        names, problems = [], []
        for p in sorted(self.root.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_symlink():
                if p.is_dir():
                    problems.append(
                        f"store folder {p} is a symbolic link (to {os.readlink(p)}); {_VERIFY}"
                    )
            elif (p / "sweep.json").is_file():
                names.append(p.name)
            elif p.is_dir() and any((p / t).is_dir() for t in TABLES):
                problems.append(
                    f"store folder {p} has part files but no sweep.json (an orphaned sweep); {_VERIFY}"
                )
        return names, problems

    def sweeps(self) -> list[str]:
        """Every sweep of the store; one `SweepError` line if a folder cannot be trusted."""
        names, problems = self.scan()
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise SweepError(problems[0] + more)
        return names

    def _lock_path(self, sweep: str) -> Path:
        return self.root / LOCK_DIR / f"{check_sweep_name(sweep)}.lock"

    @contextmanager
    def lock(self, sweep: str) -> Iterator[None]:
        """Hold the sweep's exclusive lock; refuse at once if another process holds it.

        ``flock`` is released by the kernel when its holder dies, even by SIGKILL, so a crashed
        run never leaves a stale lock behind. A store that is a file or cannot be written gives
        one line.
        """
        path = self._lock_path(sweep)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+")  # noqa: SIM115 - closed by the `with fh` below
        except OSError as err:
            raise SweepError(
                f"--store must be a folder this process can write; got {str(self.root)!r} "
                f"({_reason(err)})"
            ) from None
        with fh:
            if (holder := claim_lock(fh)) is not None:
                raise SweepError(
                    f"sweep {sweep!r} is being written by {holder}; wait for it to finish "
                    "or pass another --name"
                ) from None
            yield

    def lock_holder(self, sweep: str) -> str | None:
        """``"pid N on HOST"`` while some process runs this sweep; None when no one holds it."""
        path = self._lock_path(sweep)
        if not path.is_file():
            return None
        with open(path) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return fh.read().strip() or "another process"
            fcntl.flock(fh, fcntl.LOCK_UN)
        return None

    def is_locked(self, sweep: str) -> bool:
        """True while some process is running this sweep."""
        return self.lock_holder(sweep) is not None

    def exists(self, sweep: str) -> bool:
        return (self.sweep_dir(sweep) / "sweep.json").is_file()

    def read_meta(self, sweep: str) -> dict[str, Any]:
        path = self.sweep_dir(sweep) / "sweep.json"
        if not path.is_file():
            known = ", ".join(self.scan()[0]) or "none"
            raise SweepError(
                f"sweep must be one of the sweeps in {self.root} ({known}); got {sweep!r}"
            )
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SweepError(f"store file {path} is corrupt (not JSON: {err})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
            raise SweepError(
                f"store file {path} is not a backdoor-sweep sweep.json (no 'spec' mapping)"
            )
        return meta

    def write_meta(self, sweep: str, meta: dict[str, Any]) -> None:
        d = self.sweep_dir(sweep)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SweepError(f"store folder {d} could not be created ({_reason(err)})") from None
        atomic_write_bytes(d / "sweep.json", json.dumps(meta, indent=2, default=str).encode())

    def update_meta(self, sweep: str, **changes: Any) -> dict[str, Any]:
        meta = self.read_meta(sweep)
        meta.update(changes)
        self.write_meta(sweep, meta)
        return meta

    def delete_sweep(self, sweep: str) -> None:
        d = self.sweep_dir(sweep)
        if d.exists():
            shutil.rmtree(d)
        self._schemas.pop(sweep, None)

    def schema(self, sweep: str, table: str) -> pa.Schema:
        """The table's one schema for this sweep, from the spec in its ``sweep.json``."""
        if sweep not in self._schemas:
            from pydantic import ValidationError

            from sweep.schema import spec_schemas
            from sweep.spec import Spec

            path = self.sweep_dir(sweep) / "sweep.json"
            try:
                spec = Spec.model_validate(self.read_meta(sweep)["spec"])
            except ValidationError as err:
                raise SweepError(
                    f"store file {path} holds a spec that no longer validates "
                    f"({_first_line(err)}); its schema is unknown"
                ) from None
            self._schemas[sweep] = spec_schemas(spec)
        return self._schemas[sweep][table]

    # -- part files ---------------------------------------------------------------------------
    def part_path(self, sweep: str, table: str, trial_id: str) -> Path:
        return self.sweep_dir(sweep) / table / f"{PART_PREFIX}{trial_id}.parquet"

    def parts(self, sweep: str, table: str = "trials") -> list[Path]:
        """The table's part files, each checked (readable Parquet with the key columns).

        Raises a one-line `SweepError` naming the first file that is foreign, corrupt or a
        symbolic link.
        """
        d = self.sweep_dir(sweep) / table
        if d.is_symlink():
            raise SweepError(
                f"store folder {d} is a symbolic link (to {os.readlink(d)}); {_VERIFY}"
            )
        if not d.is_dir():
            return []
        paths = []
        for path in sorted(d.iterdir()):
            if path.name.startswith("."):
                continue  # a temporary file of a writer (or one it left when killed)
            if path.is_symlink():
                raise SweepError(
                    f"store file {path} is a symbolic link (to {os.readlink(path)}); {_VERIFY}"
                )
            if not PART_NAME.match(path.name) or not path.is_file():
                raise SweepError(
                    f"store file {path} is not a part file (expected {table}/part-<trial id>.parquet); "
                    f"{_VERIFY}"
                )
            check_part(path, table)
            paths.append(path)
        return paths

    def done_trials(self, sweep: str) -> set[str]:
        return {p.stem[len(PART_PREFIX) :] for p in self.parts(sweep, "trials")}

    def write_part(
        self,
        sweep: str,
        table: str,
        trial_id: str,
        rows: list[dict],
        schema: pa.Schema | None = None,
    ) -> Path:
        """Write one trial's rows atomically (temporary file, fsync, rename) with the table's
        schema (default: the sweep's, `schema`); a column outside it is refused."""
        path = self.part_path(sweep, table, trial_id)
        schema = schema if schema is not None else self.schema(sweep, table)
        data = conform(rows, schema, f"{table} of sweep {sweep!r}")
        sink = pa.BufferOutputStream()
        pq.write_table(data, sink)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise SweepError(
                f"store folder {path.parent} could not be created ({_reason(err)})"
            ) from None
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
        return path

    def clean_temporaries(self, sweep: str) -> int:
        """Remove temporary files a killed driver left behind; returns how many.

        Call it only while holding the sweep's lock: another writer's file would be in flight.
        """
        n = 0
        for tmp in self.sweep_dir(sweep).rglob(".tmp-*"):
            tmp.unlink(missing_ok=True)
            n += 1
        return n

    # -- reading ------------------------------------------------------------------------------
    def read_table(self, table: str = "trials", sweep: str | None = None) -> pd.DataFrame:
        """All rows of a table (one sweep or every sweep); a corrupt part file is named."""
        if table not in TABLES:
            raise SweepError(f"table must be one of {', '.join(TABLES)}; got {table!r}")
        names = [sweep] if sweep is not None else self.sweeps()
        if sweep is not None:
            self.read_meta(sweep)
        frames = []
        for name in names:
            for path in self.parts(name, table):
                frames.append(read_part(path))
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True)


def conform(rows: list[dict], schema: pa.Schema, what: str) -> pa.Table:
    """``rows`` as an Arrow table of exactly ``schema``: absent columns are null, values are
    coerced to the column's type (NaN is null), and a column the schema lacks is refused."""
    extra = sorted({k for r in rows for k in r} - set(schema.names))
    if extra:
        raise SweepError(
            f"column {extra[0]} is not in the schema of {what}"
            + (f" (nor {', '.join(extra[1:4])})" if len(extra) > 1 else "")
            + "; new metrics are declared in sweep/schema.py"
        )
    arrays = []
    for field in schema:
        values = [_coerce(r.get(field.name), field, what) for r in rows]
        arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _coerce(v: Any, field: pa.Field, what: str) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
        return None
    t = field.type
    if hasattr(v, "item") and not isinstance(v, pd.Timestamp):
        v = v.item()  # a numpy scalar
        if isinstance(v, float) and math.isnan(v):
            return None
    ok = True
    if pa.types.is_string(t):
        return v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    if pa.types.is_floating(t):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    elif pa.types.is_integer(t):
        ok = (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, float) and v.is_integer()
        )
        v = int(v) if ok else v
    elif pa.types.is_boolean(t):
        ok = isinstance(v, bool)
    if not ok:
        raise SweepError(f"column {field.name} of {what} must hold {t} values; got {str(v)[:80]!r}")
    return v


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def check_part(path: Path, table: str) -> None:
    """Refuse a part that is not Parquet or lacks the table's key columns (footer only; cached)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key in _checked:
        return
    try:
        names = set(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as err:
        raise SweepError(
            f"store file {path} is corrupt or not Parquet ({_first_line(err)}); {_VERIFY}"
        ) from None
    missing = [c for c in SCHEMA[table].required if c not in names]
    if missing:
        raise SweepError(
            f"store file {path} is not a backdoor-sweep {table} part (no column {', '.join(missing)}); "
            f"{_VERIFY}"
        )
    _checked.add(key)


def read_part(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as err:
        raise SweepError(
            f"store file {path} is corrupt or not Parquet ({_first_line(err)}); {_VERIFY}"
        ) from None
