"""Running sweeps inside the server: a queue, one runner process per sweep, cancel and resume.

One dispatcher thread owns every runner: it starts queued sweeps while fewer than
``max_running`` run, reaps runners that ended (recording their exit code and error line in the
job record), and escalates a cancel to SIGKILL of the runner's process group when SIGTERM has not
stopped it within ``cancel_grace_s``. Runners start from that long-lived thread because the kernel
signals a runner when the *thread* that forked it ends (`runner.die_with_parent`).

Nothing resumes by itself: after a restart the queue is empty and every sweep shows the status
`records.derive_status` reads from the store; ``resume`` queues one again.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from backdoor_sweep.errors import SweepError
from backdoor_sweep.service.errors import Conflict, NotFound
from backdoor_sweep.service.records import ACTIVE, Records, SweepView, now_iso, sweep_view
from sweep.store import Store

log = logging.getLogger("backdoor_sweep.service")
#: how often the dispatcher looks at its runners when nothing wakes it
TICK_S = 0.2


@dataclass
class Runner:
    name: str
    proc: subprocess.Popen
    started: float
    term_sent_at: float | None = None


class Jobs:
    """The sweeps this server runs (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        address: str | None = None,
        max_running: int = 2,
        cancel_grace_s: float = 30.0,
        env: dict[str, str] | None = None,
    ) -> None:
        if max_running < 1:
            raise SweepError(f"--max-running must be at least 1; got {max_running}")
        self.store, self.records = store, Records(store)
        self.address, self.max_running, self.cancel_grace_s = address, max_running, cancel_grace_s
        self.env = env
        self.queue: deque[str] = deque()
        self.running: dict[str, Runner] = {}
        self._lock = threading.RLock()  # guards queue, running and every job record write
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._dispatch, name="sweep-dispatcher", daemon=True)
        self._thread.start()

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop every runner like a cancel (SIGTERM, then SIGKILL after ``grace_s``); wait."""
        grace = self.cancel_grace_s if grace_s is None else grace_s
        with self._lock:
            self._stopping = True
            for name in list(self.queue):
                self._update(name, stopped="the server stopped before it started")
            self.queue.clear()
            for runner in self.running.values():
                self._update(runner.name, stopped="the server stopped while it ran")
                self._signal(runner, signal.SIGTERM)
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(grace + 10)
        with self._lock:  # the dispatcher is gone: make sure no runner outlives the server
            for runner in list(self.running.values()):
                self._signal(runner, signal.SIGKILL, group=True)
                runner.proc.wait(10)
                self._reaped(runner)

    # -- requests -----------------------------------------------------------------------------
    def submit(self, spec, submitter: str) -> SweepView:
        """Queue a validated spec under its name; `Conflict` if the name is taken."""
        name = spec.name
        with self._lock:
            if self.store.exists(name) or self.store.is_locked(name):
                raise Conflict(
                    f"sweep name must be new; {name!r} is already in the store "
                    f"(resume it with POST /sweeps/{name}/resume, or submit under another name)"
                )
            if not self.records.claim(name):
                raise Conflict(
                    f"sweep name must be new; {name!r} was already submitted to this server"
                )
            self.records.write_job(
                name,
                {
                    "name": name,
                    "submitter": submitter,
                    "submitted_at": now_iso(),
                    "n_results": spec.n_results,
                    "spec": spec.model_dump(mode="json"),
                    "history": [{"at": now_iso(), "by": submitter, "action": "submit"}],
                    "cancel": None,
                    "run": None,
                },
            )
            self._enqueue(name)
            return self.view(name)

    def cancel(self, name: str, by: str) -> SweepView:
        with self._lock:
            status = self.view(name).status
            if status not in ACTIVE:
                raise Conflict(
                    f"sweep {name!r} must be queued or running to cancel it; it is {status}"
                )
            if name not in self.queue and name not in self.running:
                raise Conflict(
                    f"sweep {name!r} is run by another process (not this server); stop it there"
                )
            self._update(name, cancel={"at": now_iso(), "by": by}, history_add=(by, "cancel"))
            if name in self.queue:
                self.queue.remove(name)
            elif self.running[name].term_sent_at is None:
                self._signal(self.running[name], signal.SIGTERM)
            self._wake.notify_all()
            return self.view(name)

    def resume(self, name: str, by: str) -> SweepView:
        with self._lock:
            status = self.view(name).status
            if status in ACTIVE:
                raise Conflict(
                    f"sweep {name!r} must not be queued or running to resume it; it is {status}"
                )
            if status == "finished":
                raise Conflict(f"sweep {name!r} is finished; there is nothing to resume")
            job = self.records.read_job(name)
            if job is None:  # a sweep started with the CLI: adopt it
                meta = self.store.read_meta(name)
                self.records.claim(name)
                job = {
                    "name": name,
                    "submitter": meta.get("submitter", ""),
                    "submitted_at": None,
                    "n_results": meta.get("n_results"),
                    "spec": meta["spec"],
                    "history": [],
                    "run": None,
                }
            job.update(cancel=None, stopped=None)
            job.setdefault("history", []).append({"at": now_iso(), "by": by, "action": "resume"})
            self.records.write_job(name, job)
            self._enqueue(name)
            return self.view(name)

    # -- views --------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(set(self.store.sweeps()) | set(self.records.names()))

    def exists(self, name: str) -> bool:
        return self.store.exists(name) or self.records.job_path(name).is_file()

    def view(self, name: str) -> SweepView:
        if not self.exists(name):
            known = ", ".join(self.names()) or "none"
            raise NotFound(
                f"sweep must be one of the sweeps of this server ({known}); got {name!r}"
            )
        return sweep_view(self.records, name, alive=name in self.running, queued=name in self.queue)

    def views(self) -> list[SweepView]:
        out = []
        for name in self.names():
            try:
                out.append(self.view(name))
            except SweepError as err:  # a corrupt sweep.json: listed with its one line
                out.append(SweepView(name, "", "failed", 0, None, None, None, None, None, str(err)))
        return out

    # -- the dispatcher -----------------------------------------------------------------------
    def _enqueue(self, name: str) -> None:
        if self._stopping:
            raise Conflict("the server is stopping; submit again after it restarts")
        self.queue.append(name)
        self._wake.notify_all()

    def _dispatch(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                for runner in list(self.running.values()):
                    if runner.proc.poll() is not None:
                        self._reaped(runner)
                    elif (
                        runner.term_sent_at is not None
                        and now - runner.term_sent_at > self.cancel_grace_s
                    ):
                        log.warning(
                            "sweep %s did not stop within %.0f s: killing it",
                            runner.name,
                            self.cancel_grace_s,
                        )
                        self._signal(runner, signal.SIGKILL, group=True)
                if self._stopping:
                    if not self.running:
                        return
                else:
                    while self.queue and len(self.running) < self.max_running:
                        self._launch(self.queue.popleft())
                self._wake.wait(TICK_S)

    def _launch(self, name: str) -> None:
        log_path = self.records.log_path(name)
        cmd = [
            sys.executable,
            "-m",
            "backdoor_sweep.service.runner",
            "sweep",
            "--store",
            str(self.store.root),
            "--name",
            name,
            "--parent-pid",
            str(os.getpid()),
        ]
        if self.address:
            cmd += ["--address", self.address]
        try:
            self.records.progress_path(name).unlink(missing_ok=True)
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    start_new_session=True,
                )
        except OSError as err:
            self._update(
                name,
                run={
                    "pid": None,
                    "started_at": now_iso(),
                    "ended_at": now_iso(),
                    "exit_code": 1,
                    "error": f"runner could not start: {err}",
                },
            )
            return
        self.running[name] = Runner(name, proc, time.monotonic())
        self._update(
            name,
            run={
                "pid": proc.pid,
                "started_at": now_iso(),
                "ended_at": None,
                "exit_code": None,
                "error": "",
            },
        )
        log.info("sweep %s: runner pid %d started", name, proc.pid)

    def _reaped(self, runner: Runner) -> None:
        code = runner.proc.returncode
        self.running.pop(runner.name, None)
        job = self.records.read_job(runner.name) or {}
        run = dict(job.get("run") or {})
        run.update(
            ended_at=now_iso(),
            exit_code=code,
            error=self.records.last_error(runner.name) if code not in (0, None) else "",
        )
        self._update(runner.name, run=run)
        log.info("sweep %s: runner pid %d ended with %s", runner.name, runner.proc.pid, code)

    def _signal(self, runner: Runner, sig: int, group: bool = False) -> None:
        if sig == signal.SIGTERM:
            runner.term_sent_at = time.monotonic()
        try:
            if group:  # the runner leads its own session: its Ray processes go with it
                os.killpg(runner.proc.pid, sig)
            else:
                runner.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def _update(
        self, name: str, history_add: tuple[str, str] | None = None, **changes: Any
    ) -> None:
        job = self.records.read_job(name)
        if job is None:
            return
        job.update(changes)
        if history_add is not None:
            by, action = history_add
            job.setdefault("history", []).append({"at": now_iso(), "by": by, "action": action})
        self.records.write_job(name, job)
