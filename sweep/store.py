"""The result store: one folder per sweep, Parquet part files written atomically.

Layout under the store root::

    <store>/<sweep>/sweep.json                    spec, grid size, status, timings, versions
    <store>/<sweep>/trials/part-<trial_id>.parquet one row per (configuration, seed)
    <store>/<sweep>/curves/part-<trial_id>.parquet one row per (result, β) when curves are on

Each part file holds every result of one Ray Tune trial and is written by the driver to a
temporary file in the same folder, then renamed: a reader never sees half a file, and a trial
written twice replaces itself instead of duplicating rows. A sweep is resumable because the
trial ids are a hash of the trial's configurations: the ids already on disk are done.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sweep.errors import SweepError

TABLES = ("trials", "curves")
PART_PREFIX = "part-"


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
    def sweep_dir(self, sweep: str) -> Path:
        return self.root / sweep

    def sweeps(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "sweep.json").is_file())

    def exists(self, sweep: str) -> bool:
        return (self.sweep_dir(sweep) / "sweep.json").is_file()

    def read_meta(self, sweep: str) -> dict[str, Any]:
        path = self.sweep_dir(sweep) / "sweep.json"
        if not path.is_file():
            known = ", ".join(self.sweeps()) or "none"
            raise SweepError(f"sweep must be one of the sweeps in {self.root} ({known}); got {sweep!r}")
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise SweepError(f"store file {path} is corrupt (not JSON: {err})") from None

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
        d = self.sweep_dir(sweep) / table
        return sorted(d.glob(f"{PART_PREFIX}*.parquet")) if d.is_dir() else []

    def done_trials(self, sweep: str) -> set[str]:
        return {p.stem[len(PART_PREFIX):] for p in self.parts(sweep, "trials")}

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
        """Remove temporary files a killed driver left behind; returns how many."""
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


def read_part(path: Path) -> pd.DataFrame:
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SweepError(f"store file {path} is corrupt or not Parquet ({msg}); move it away or run `backdoor-sweep verify`") from None
