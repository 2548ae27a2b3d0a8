"""The report and explain pages of a sweep, built by a child process and cached in the store.

Building them refits models (the explanations), so they run in `backdoor_sweep.service.runner`
processes, one at a time, each bounded by ``timeout_s`` and killed by its process group when it
runs over. A built page is kept under ``.service/sweeps/<name>/pages/`` keyed by the state of the
sweep's results (and the page's options), so asking again is free until a trial finishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from backdoor_sweep.errors import SweepError
from backdoor_sweep.service.errors import Busy, ServerFault
from backdoor_sweep.service.records import Records
from sweep.spec import stable_hash

#: built pages kept per sweep and kind (older ones are removed)
KEEP_PAGES = 4


class Documents:
    def __init__(self, records: Records, state, timeout_s: float = 600.0, env=None) -> None:
        """``state(name)`` is the sweep's results state (`analyses.Results.state`)."""
        self.records, self.state, self.timeout_s, self.env = records, state, timeout_s, env
        self._one_at_a_time = threading.Semaphore(1)

    def report(self, name: str) -> Path:
        return self._page("report", name, [])

    def explain(self, name: str, where: str | None, seed: int | None) -> Path:
        args = (["--where", where] if where else []) + (
            ["--seed", str(seed)] if seed is not None else []
        )
        return self._page("explain", name, args)

    def _page(self, kind: str, name: str, args: list[str]) -> Path:
        store = self.records.store
        meta = store.read_meta(name)
        key = stable_hash([self.state(name), meta.get("status"), meta.get("finished_at"), args])
        folder = self.records.pages(name)
        path = folder / f"{kind}-{key}.html"
        if path.is_file():
            return path
        if not self._one_at_a_time.acquire(timeout=self.timeout_s):
            raise Busy(
                f"{kind} page must start within {self.timeout_s:g} s; other pages are being built "
                "(try again shortly)"
            )
        try:
            if path.is_file():  # built while this request waited
                return path
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = folder / f".tmp-{uuid.uuid4().hex}.html"
            try:
                self._build(kind, name, tmp, args)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        finally:
            self._one_at_a_time.release()
        for old in sorted(folder.glob(f"{kind}-*.html"), key=lambda p: p.stat().st_mtime)[
            :-KEEP_PAGES
        ]:
            old.unlink(missing_ok=True)
        return path

    def _build(self, kind: str, name: str, out: Path, args: list[str]) -> None:
        cmd = [
            sys.executable,
            "-m",
            "backdoor_sweep.service.runner",
            kind,
            "--store",
            str(self.records.store.root),
            "--name",
            name,
            "--out",
            str(out),
            "--parent-pid",
            str(os.getpid()),
            *args,
        ]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            raise Busy(
                f"{kind} page must be built within {self.timeout_s:g} s; it was stopped"
            ) from None
        if proc.returncode != 0:
            lines = [ln for ln in err.splitlines() if ln.strip()]
            errors = [ln[len("error: ") :] for ln in lines if ln.startswith("error: ")]
            if errors:
                raise SweepError(errors[-1])
            raise ServerFault(
                f"{kind} page of sweep {name!r} could not be built: "
                + (lines[-1] if lines else f"exit code {proc.returncode}")
            )
