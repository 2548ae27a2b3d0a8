"""A real ``backdoor-sweep serve`` on loopback for tests: started as a subprocess, stopped by PID.

The server's runners start their own in-process Ray; ``RAY_TMPDIR`` points at a short temporary
folder because Ray's unix socket paths must stay under 108 bytes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from backdoor_sweep.service.auth import Tokens
from sweep.store import SERVICE_DIR
from tests.local_cluster import alive, free_port

ROOT = Path(__file__).resolve().parent.parent.parent
CLI = [sys.executable, "-m", "backdoor_sweep.cli"]


def add_token(store: Path, name: str) -> str:
    """A token for ``name`` in the store's token file (what ``token add`` does)."""
    store.mkdir(parents=True, exist_ok=True)
    return Tokens(store / SERVICE_DIR / "tokens.json").add(name)


class LiveServer:
    """``backdoor-sweep serve --store STORE --port <free> ARGS`` in a subprocess."""

    def __init__(self, store: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.store, self.args, self.extra_env = store, list(args), env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="bss", dir="/tmp"))
        self.log = self.ray_tmp / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> LiveServer:
        env = {
            **os.environ,
            **self.extra_env,
            "PYTHONPATH": str(ROOT),
            "RAY_TMPDIR": str(self.ray_tmp),
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*CLI, "serve", "--store", str(self.store), "--port", str(self.port), *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"the server did not answer /health within {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def client(self, token: str | None = None, timeout: float = 120) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM (a graceful stop: running sweeps are stopped), then SIGKILL at the deadline."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.ray_tmp, ignore_errors=True)


def wait_for(check, timeout: float, what: str, every: float = 0.2):
    """Poll ``check()`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what} within {timeout} s")


def gone(pid: int, timeout: float) -> bool:
    """True once ``pid`` no longer runs (zombies count as gone)."""
    deadline = time.monotonic() + timeout
    while alive([pid]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive([pid])
