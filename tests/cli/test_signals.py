"""Ctrl-C and ``kill PID`` stop a real `backdoor-sweep run` process the same way.

The driver is a real process (signals need one), stopped by its PID once it has stored its first
result. It must print the plan first, end with exit code 130 (SIGINT) or 143 (SIGTERM) and a
resume command — with ``--store`` — that finishes the sweep when pasted from another folder; no
traceback, no Ray crash dump, no ``Tuner.restore`` hint. Expected result counts come from the spec
file itself, not from the planning code.
"""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import yaml

from sweep.spec import load_spec
from sweep.store import Store
from tests.conftest import ROOT, cli

pytestmark = pytest.mark.slow

#: 20 trials of one result each: long enough to be stopped after the first one is stored
GRID = {"C": [0.1, 0.3, 1.0, 3.0, 10.0], "gamma": [0.001, 0.01, 0.1, 1.0]}


def write_spec(tmp_path) -> tuple:
    raw = load_spec().model_dump(mode="json")
    raw["name"] = "stopped"
    raw["grid"] = {**GRID, "poison_rate": [0.1], "trigger_size": [3]}
    raw["seeds"] = [0]
    raw["curves"] = {"enabled": False}
    path = tmp_path / "stopped.yaml"
    path.write_text(yaml.safe_dump(raw))
    n_results = len(list(itertools.product(*raw["grid"].values()))) * len(raw["seeds"])
    return path, n_results


def wait_for_first_result(store: Store, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if store.exists("stopped") and store.done_trials("stopped"):
            return
        time.sleep(0.2)
    raise AssertionError(f"no result stored (exit code {proc.poll()})")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_run_prints_a_resume_command_that_works_when_pasted(
    tmp_path, ray_runtime, signum, code
):
    spec, n_results = write_spec(tmp_path)
    store = Store(tmp_path / "store")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "backdoor_sweep.cli", "run", spec, "--store", store.root],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_first_result(store, proc)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err[-3000:]
    first = out.splitlines()[:2]
    assert first[0].startswith(
        f"sweep stopped: 5 C x 4 gamma x 1 poison_rate x 1 trigger_size x 1 seed = {n_results} results in 20 trials"
    )
    assert first[1].strip() == f"store: {store.sweep_dir('stopped').resolve()}"
    assert "Traceback" not in err and "Tuner.restore" not in err, err[-3000:]
    hint = err.strip().splitlines()[-1]
    prefix = "sweep 'stopped' is incomplete; finish it with: "
    assert hint.startswith(prefix), err[-3000:]
    words = shlex.split(hint[len(prefix) :])
    assert words[:5] == [
        "backdoor-sweep",
        "resume",
        "stopped",
        "--store",
        str(store.root.resolve()),
    ]
    assert store.read_meta("stopped")["status"] == "incomplete"
    n_before = len(store.read_table("trials", "stopped"))
    assert 0 < n_before < n_results

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = cli(*words[1:], "--quiet", cwd=elsewhere)  # pasted, from another folder
    assert resumed.returncode == 0, resumed.stderr
    df = store.read_table("trials", "stopped")
    assert len(df) == n_results and df["result_id"].is_unique and (df["status"] == "ok").all()
    assert store.read_meta("stopped")["status"] == "finished"
