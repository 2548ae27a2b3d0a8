"""The result store: one folder per sweep, Parquet part files written atomically.

Layout under the store root::

    <store>/<sweep>/sweep.json                    spec, grid size, status, timings, versions
    <store>/<sweep>/trials/part-<trial_id>.parquet one row per (configuration, seed)
    <store>/<sweep>/curves/part-<trial_id>.parquet one row per (result, β) when curves are on
    <store>/<sweep>/dynamics/part-<trial_id>.parquet one row per (result, epoch) when
                                                   explain.dynamics is on (networks)

Each part file holds every result of one Ray Tune trial and is written by the driver to a
temporary file in the same folder, then renamed: a reader never sees half a file, and a trial
written twice replaces itself instead of duplicating rows. A sweep is resumable because the
trial ids are a hash of the trial's configurations: the ids already on disk are done.

Readers refuse what they cannot trust, naming the file: a part that is not Parquet, a Parquet file
without the store's key columns, or a file in ``trials/``/``curves/`` that is not a part at all.
Hidden files (a ``.tmp-*`` left by a killed writer) are skipped; ``backdoor-sweep verify`` reports
them. A run holds an exclusive lock on its sweep (``<store>/.locks/<sweep>.lock``, ``flock``), so
two runs of one sweep name cannot interleave while runs of different sweeps share the store freely.
What trials compute once for every sweep (trained generators) lives in ``<store>/.cache``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from backdoor_sweep.errors import SweepError

TABLES = ("trials", "curves", "dynamics")
PART_PREFIX = "part-"
PART_NAME = re.compile(r"^part-([0-9a-f]+)\.parquet$")
#: columns every part of a table must have (what joins results, trials and sweeps)
KEY_COLUMNS = {
    "trials": ("sweep", "trial_id", "result_id", "status"),
    "curves": ("sweep", "trial_id", "result_id"),
    "dynamics": ("sweep", "trial_id", "result_id"),
}
LOCK_DIR = ".locks"
#: what trials compute once and reuse across sweeps (e.g. trained generators); see `Store.cache_dir`
CACHE_DIR = ".cache"
#: (path, mtime_ns, size) of part files whose footer and key columns were already checked
_checked: set[tuple[str, int, int]] = set()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Store:
    """A folder of sweeps. Cheap to construct; touches the disk only when asked."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- sweeps -------------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        """``<store>/.cache``: trained generators and the like, shared by every sweep of the store."""
        return self.root / CACHE_DIR

    def sweep_dir(self, sweep: str) -> Path:
        return self.root / sweep

    def sweeps(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "sweep.json").is_file())

    @contextmanager
    def lock(self, sweep: str) -> Iterator[None]:
        """Hold the sweep's exclusive lock; refuse at once if another process holds it.

        ``flock`` is released by the kernel when its holder dies, even by SIGKILL, so a crashed
        run never leaves a stale lock behind.
        """
        path = self.root / LOCK_DIR / f"{sweep}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise SweepError(
                    f"sweep {sweep!r} is being written by {holder}; wait for it to finish "
                    "or pass another --name"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {os.uname().nodename}")
            fh.flush()
            yield

    def is_locked(self, sweep: str) -> bool:
        """True while some process is running this sweep."""
        path = self.root / LOCK_DIR / f"{sweep}.lock"
        if not path.is_file():
            return False
        with open(path) as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
        return False

    def exists(self, sweep: str) -> bool:
        return (self.sweep_dir(sweep) / "sweep.json").is_file()

    def read_meta(self, sweep: str) -> dict[str, Any]:
        path = self.sweep_dir(sweep) / "sweep.json"
        if not path.is_file():
            known = ", ".join(self.sweeps()) or "none"
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
        d.mkdir(parents=True, exist_ok=True)
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

    # -- part files ---------------------------------------------------------------------------
    def part_path(self, sweep: str, table: str, trial_id: str) -> Path:
        return self.sweep_dir(sweep) / table / f"{PART_PREFIX}{trial_id}.parquet"

    def parts(self, sweep: str, table: str = "trials") -> list[Path]:
        """The table's part files, each checked (readable Parquet with the key columns).

        Raises a one-line `SweepError` naming the first file that is foreign or corrupt.
        """
        d = self.sweep_dir(sweep) / table
        if not d.is_dir():
            return []
        paths = []
        for path in sorted(d.iterdir()):
            if path.name.startswith("."):
                continue  # a temporary file of a writer (or one it left when killed)
            if not PART_NAME.match(path.name) or not path.is_file():
                raise SweepError(
                    f"store file {path} is not a part file (expected {table}/part-<trial id>.parquet); "
                    "move it out of the store or run `backdoor-sweep verify`"
                )
            check_part(path, table)
            paths.append(path)
        return paths

    def done_trials(self, sweep: str) -> set[str]:
        return {p.stem[len(PART_PREFIX) :] for p in self.parts(sweep, "trials")}

    def write_part(self, sweep: str, table: str, trial_id: str, rows: list[dict]) -> Path:
        """Write one trial's rows atomically (temporary file, fsync, rename)."""
        path = self.part_path(sweep, table, trial_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(rows)
        tbl = pa.Table.from_pandas(frame, preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(tbl, sink)
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
            f"store file {path} is corrupt or not Parquet ({_first_line(err)}); "
            "move it out of the store or run `backdoor-sweep verify`"
        ) from None
    missing = [c for c in KEY_COLUMNS[table] if c not in names]
    if missing:
        raise SweepError(
            f"store file {path} is not a backdoor-sweep {table} part (no column {', '.join(missing)}); "
            "move it out of the store or run `backdoor-sweep verify`"
        )
    _checked.add(key)


def read_part(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as err:
        raise SweepError(
            f"store file {path} is corrupt or not Parquet ({_first_line(err)}); "
            "move it out of the store or run `backdoor-sweep verify`"
        ) from None
