"""Shared fixtures: a session-wide in-process Ray runtime, the digits dataset, temp stores."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def ray_runtime():
    """A real Ray runtime started in-process once for the whole test session (2 CPUs)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def digits_data():
    from trainables.data.datasets import DatasetSpec, load_dataset

    return load_dataset(DatasetSpec(name="digits", classes=[7, 1]))


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running the CLI in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


def cli(*args: str, env=None, cwd=None, timeout=600):
    """Run `backdoor-sweep ARGS` in a subprocess; returns CompletedProcess."""
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "backdoor_sweep.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )
