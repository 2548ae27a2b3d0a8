"""Shared fixtures: a session-wide in-process Ray runtime, the digits dataset, temp stores, the CLI.

`cli` runs ``backdoor-sweep ARGS`` in this process (``main(args)``, its output captured) — the
command line as a user types it, without a new interpreter per call. `cli_subprocess` runs it as
a real process, for the few tests that need one (signals, the installed entry point, stderr as
the terminal shows it).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: what a test run may leave in the repository: caches and the venv, nothing else
_REPO_BOOKKEEPING = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache"}


def repository_files() -> set[str]:
    """Every file of the checkout except version control, the venv and caches."""
    found = set()
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in _REPO_BOOKKEEPING and not d.endswith(".egg-info")]
        found.update(os.path.relpath(os.path.join(folder, f), ROOT) for f in files)
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_the_repository():
    """Tests write only to their temporary folders: a file that appears in the checkout during the
    session (a screenshot, a default ``--out``, a ``results/`` store) fails the run."""
    before = repository_files()
    yield
    added = sorted(repository_files() - before)
    assert not added, f"tests wrote into the repository: {added[:10]}"


def start_ray():
    """The test session's in-process Ray runtime (2 CPUs), started once."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    return ray


@pytest.fixture(scope="session")
def ray_runtime():
    """A real Ray runtime started in-process once for the whole test session (2 CPUs)."""
    ray = start_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def digits_data():
    from trainables.data.datasets import DatasetSpec, load_dataset

    return load_dataset(DatasetSpec(name="digits", classes=[7, 1]))


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running the CLI: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


@dataclass
class CliResult:
    """What a command left: its exit code and what it wrote (like `subprocess.CompletedProcess`)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | str | None = None) -> CliResult:
    """Run ``backdoor-sweep ARGS`` in this process and capture its exit code, stdout and stderr.

    ``env`` replaces the environment and ``cwd`` the working folder for the call; both are put
    back afterwards. A sweep run this way uses the session's Ray if one is up (`ray_runtime`).
    """
    from backdoor_sweep.cli import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    code: int | str | None = 0
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
            except SystemExit as exc:
                code = exc.code
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return CliResult(argv, returncode, out.getvalue(), err.getvalue())


def cli_subprocess(
    *args: str, env: dict[str, str] | None = None, cwd=None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m backdoor_sweep.cli ARGS`` as a real process (this checkout on its path)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "backdoor_sweep.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
