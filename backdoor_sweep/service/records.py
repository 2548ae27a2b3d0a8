"""What the service keeps in the store about each sweep, and the status it derives from it.

The store stays the single source of truth, so a restarted server shows every sweep as it really
is. Beside the sweeps, under ``<store>/.service/`` (which `sweep.verify` skips)::

    tokens.json                    hashed bearer tokens, mode 0600 (`backdoor_sweep.service.auth`)
    server.lock                    held (flock) by the one server of this store
    sweeps/<name>/job.json         who submitted it, its spec, cancel/resume history, the last
                                   runner's pid and exit code — written by the server only
    sweeps/<name>/progress.json    results done, total and ETA — written by the sweep's runner
    sweeps/<name>/runner.log       the runner's output (its one-line error when it failed)
    sweeps/<name>/pages/           cached report and explain pages

The status is derived, never stored: the sweep's lock (held while a process writes it), its
``sweep.json`` status, this server's own queue and child processes, and the job record. A sweep
whose runner died (a killed server, a crash) holds no lock and is not finished: *interrupted*.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from backdoor_sweep.errors import SweepError
from sweep.store import SERVICE_DIR, Store, atomic_write_bytes

#: exit codes of `backdoor_sweep.service.runner`
EXIT_FINISHED, EXIT_CRASHED, EXIT_BAD_INPUT, EXIT_INCOMPLETE = 0, 1, 2, 3
STATUSES = (
    "queued",  # accepted, waiting for a free runner slot
    "starting",  # its runner runs but has not taken the sweep's lock yet
    "running",
    "cancelling",  # cancel asked; its runner is stopping the trials
    "finished",
    "cancelled",
    "failed",  # its runner stopped with an error (see ``error``)
    "interrupted",  # its runner died or the server stopped: resume it on request
)
ACTIVE = ("queued", "starting", "running", "cancelling")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Records:
    """Paths and JSON files of the service under one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.root / SERVICE_DIR
        self._rows: dict[str, tuple[tuple[int, int], int]] = {}  # part -> (stat, rows)

    def folder(self, name: str) -> Path:
        return self.root / "sweeps" / name

    def job_path(self, name: str) -> Path:
        return self.folder(name) / "job.json"

    def progress_path(self, name: str) -> Path:
        return self.folder(name) / "progress.json"

    def log_path(self, name: str) -> Path:
        return self.folder(name) / "runner.log"

    def pages(self, name: str) -> Path:
        return self.folder(name) / "pages"

    def names(self) -> list[str]:
        d = self.root / "sweeps"
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if (p / "job.json").is_file())

    def claim(self, name: str) -> bool:
        """Make the sweep's folder; False if it exists. ``mkdir`` is atomic: one claim wins."""
        (self.root / "sweeps").mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self.folder(name).mkdir(mode=0o700)
        except FileExistsError:
            return False
        return True

    def read_job(self, name: str) -> dict[str, Any] | None:
        return _read_json(self.job_path(name))

    def write_job(self, name: str, job: dict[str, Any]) -> None:
        self.folder(name).mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write_bytes(self.job_path(name), json.dumps(job, indent=2, default=str).encode())

    def read_progress(self, name: str) -> dict[str, Any] | None:
        return _read_json(self.progress_path(name))

    def write_progress(self, name: str, done: int, total: int, eta_s: float | None) -> None:
        data = {"done": done, "total": total, "eta_s": eta_s, "at": time.time()}
        atomic_write_bytes(self.progress_path(name), json.dumps(data).encode())

    def last_error(self, name: str) -> str:
        """The runner's last ``error: …`` line, else its last line (a crash's exception)."""
        path = self.log_path(name)
        if not path.is_file():
            return ""
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - 16_384))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln]
        errors = [ln[len("error: ") :] for ln in lines if ln.startswith("error: ")]
        return (errors[-1] if errors else lines[-1] if lines else "")[:500]

    def stored_results(self, name: str) -> int:
        """Rows in the sweep's trials parts (from the Parquet footers, cached per file)."""
        n = 0
        for part in self.store.parts(name, "trials"):
            st = part.stat()
            key = (st.st_mtime_ns, st.st_size)
            cached = self._rows.get(str(part))
            if cached is None or cached[0] != key:
                cached = (key, pq.read_metadata(part).num_rows)
                self._rows[str(part)] = cached
            n += cached[1]
        return n


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        raise SweepError(f"service file {path} is corrupt (not JSON)") from None
    return data if isinstance(data, dict) else None


@dataclass
class SweepView:
    """One sweep as the API lists it."""

    name: str
    submitter: str
    status: str
    done: int
    total: int | None
    eta_s: float | None
    submitted_at: str | None
    created_at: str | None
    finished_at: str | None
    error: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def derive_status(
    *,
    job: dict[str, Any] | None,
    meta: dict[str, Any] | None,
    locked: bool,
    alive: bool,
    queued: bool,
) -> str:
    """The sweep's status (one of `STATUSES`) from what the store and the server know.

    ``locked``: some process holds the sweep's lock; ``alive``: this server's runner of it runs;
    ``queued``: it waits in this server's queue.
    """
    cancel = bool(job and job.get("cancel"))
    if queued:
        return "queued"
    if locked or alive:
        if cancel and alive:
            return "cancelling"
        if not locked and _finished_by_this_run(job, meta):
            return "finished"  # its runner is still exiting (the lock goes first)
        return "running" if locked else "starting"
    if meta is not None and meta.get("status") == "finished":
        return "finished"
    if cancel:
        return "cancelled"
    run = (job or {}).get("run") or {}
    code = run.get("exit_code")
    if isinstance(code, int) and code in (EXIT_CRASHED, EXIT_BAD_INPUT):
        return "failed"
    return "interrupted"


def _finished_by_this_run(job: dict[str, Any] | None, meta: dict[str, Any] | None) -> bool:
    """True when the store says finished at or after this server's runner started — not the
    finish of an earlier run that an ``--overwrite`` run is about to replace."""
    if not meta or meta.get("status") != "finished":
        return False
    started = ((job or {}).get("run") or {}).get("started_at")
    finished = meta.get("finished_at")
    if not started or not finished:
        return False
    try:
        return datetime.fromisoformat(finished) >= datetime.fromisoformat(started)
    except (TypeError, ValueError):
        return False


def sweep_view(
    records: Records,
    name: str,
    *,
    alive: bool,
    queued: bool,
) -> SweepView:
    """The view of ``name`` (which has a ``sweep.json``, a job record or both)."""
    store = records.store
    job = records.read_job(name)
    meta = store.read_meta(name) if store.exists(name) else None
    locked = store.is_locked(name)
    status = derive_status(job=job, meta=meta, locked=locked, alive=alive, queued=queued)
    total = (meta or {}).get("n_results") or (job or {}).get("n_results")
    done = records.stored_results(name) if meta is not None else 0
    eta = None
    progress = records.read_progress(name) if status in ACTIVE else None
    if progress is not None:
        done = max(done, int(progress.get("done", 0)))
        if progress.get("eta_s") is not None:
            eta = max(0.0, float(progress["eta_s"]) - (time.time() - float(progress["at"])))
    error = ""
    if status == "failed":
        error = ((job or {}).get("run") or {}).get("error", "")
    elif status == "interrupted" and job and job.get("stopped"):
        error = str(job["stopped"])
    return SweepView(
        name=name,
        submitter=str((job or {}).get("submitter") or (meta or {}).get("submitter") or ""),
        status=status,
        done=done,
        total=int(total) if total is not None else None,
        eta_s=round(eta, 1) if eta is not None else None,
        submitted_at=(job or {}).get("submitted_at"),
        created_at=(meta or {}).get("created_at"),
        finished_at=(meta or {}).get("finished_at") if status not in ACTIVE else None,
        error=error,
    )
