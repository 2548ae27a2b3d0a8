"""Faults: a raising trial, a killed or interrupted driver, concurrent runs — nothing lost or twice.

A fault is injected through `run_sweep(trial_fn=...)`: a wrapper around the real
`trainables.trial.tune_trial`, built by a factory so cloudpickle ships it to the Ray workers by
value (a nested function cannot be imported by name). Attempts are counted with marker files,
which every worker process can see. Driver faults use the real CLI in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from sweep.launcher import run_sweep
from sweep.plan import plan_trials
from sweep.spec import load_spec, parse_spec
from sweep.store import Store
from sweep.verify import verify_store
from tests.local_cluster import cmdline, descendants, kill_pids, wait_gone

CLI = [sys.executable, "-m", "backdoor_sweep.cli"]
ROOT = Path(__file__).resolve().parent.parent


def smoke_spec(store: Path, name: str, **execution):
    raw = load_spec().smoke().model_dump(mode="json")
    raw.update(name=name, store=str(store))
    raw["execution"].update(execution)
    return parse_spec(raw)


def faulty_trial(marker_dir: str, always: str, once: str):
    """``tune_trial``, except: trial ``always`` fails on every attempt after reporting 2 results,
    trial ``once`` fails on its first attempt after 1 result. Each attempt leaves a marker file."""

    def trial(config, data):
        from trainables.trial import tune_trial

        tid = config["trial_id"]
        attempt = len([f for f in os.listdir(marker_dir) if f.startswith(tid)]) + 1
        Path(marker_dir, f"{tid}-{attempt}").touch()
        if tid == always or (tid == once and attempt == 1):
            done = 2 if tid == always else 1
            tune_trial({**config, "results": config["results"][:done], "report_every_s": 0}, data)
            raise RuntimeError(f"injected fault in trial {tid}, attempt {attempt}")
        tune_trial(config, data)

    return trial


@pytest.mark.slow
def test_a_raising_trial_is_retried_then_stored_as_error_and_the_sweep_goes_on(
    ray_runtime, tmp_path
):
    spec = smoke_spec(tmp_path / "store", "faulty", max_failures=2)
    plans = plan_trials(spec)
    always, once = plans[0].trial_id, plans[1].trial_id
    markers = tmp_path / "attempts"
    markers.mkdir()
    outcome = run_sweep(
        spec, show_progress=False, trial_fn=faulty_trial(str(markers), always, once)
    )

    attempts = {p.trial_id: len(list(markers.glob(f"{p.trial_id}-*"))) for p in plans}
    assert attempts[always] == 1 + 2  # the first attempt and max_failures retries
    assert attempts[once] == 2
    assert all(attempts[p.trial_id] == 1 for p in plans[2:])

    df = Store(spec.store).read_table("trials", "faulty")
    assert sorted(df["result_id"]) == sorted(u["result_id"] for p in plans for u in p.results)
    bad = (
        df[df["trial_id"] == always]
        .set_index("result_id")
        .loc[[u["result_id"] for u in plans[0].results]]
    )
    assert list(bad["status"]) == ["ok", "ok"] + ["error"] * (len(plans[0].results) - 2)
    assert bad["error"].iloc[2:].str.contains(f"injected fault in trial {always}, attempt 3").all()
    assert (df.loc[df["trial_id"] != always, "status"] == "ok").all()
    assert (outcome.n_ok, outcome.n_error) == (
        len(df) - len(plans[0].results) + 2,
        len(plans[0].results) - 2,
    )
    assert outcome.complete and Store(spec.store).read_meta("faulty")["status"] == "finished"
    report = verify_store(Store(spec.store))
    assert report.ok, report.problems
    assert any("status error" in n for n in report.notes)


def write_spec(tmp_path: Path, name: str, smoke: bool = False, **execution) -> Path:
    spec = load_spec()
    raw = (spec.smoke() if smoke else spec).model_dump(mode="json")
    raw["name"] = name
    if not smoke:  # 6 trials of 12 results, each with its learning curve
        raw["grid"].update(C=[0.01, 1, 100], gamma=[0.01, 1])
        raw["seeds"] = [0]
    raw["execution"].update(execution)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def cli_env(ray_tmp: Path) -> dict[str, str]:
    """The CLI's environment: its in-process Ray keeps its session files under ``ray_tmp``."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(ray_tmp)}


@pytest.fixture
def short_tmp():
    """Make short temporary folders (removed afterwards): Ray's unix socket paths live under
    RAY_TMPDIR and must stay under 108 bytes, which pytest's tmp_path can exceed."""
    made: list[Path] = []

    def make() -> Path:
        made.append(Path(tempfile.mkdtemp(prefix="bsf", dir="/tmp")))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def expected_ids(spec_path: Path) -> list[str]:
    spec = parse_spec(yaml.safe_load(spec_path.read_text()))
    return sorted(u["result_id"] for p in plan_trials(spec) for u in p.results)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_driver_stopped_mid_sweep_then_resume_stores_each_result_once(tmp_path, sig, short_tmp):
    """Kill (or Ctrl-C) the CLI once some trials are stored; its Ray must go with it; resume."""
    spec = write_spec(tmp_path, "interrupted", max_concurrent_trials=1)
    store = Store(tmp_path / "store")
    ray_tmp = short_tmp()
    driver = subprocess.Popen(
        [*CLI, "run", str(spec), "--store", str(store.root), "--quiet"],
        env=cli_env(ray_tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while driver.poll() is None and time.monotonic() < deadline:
            if store.exists("interrupted") and len(store.parts("interrupted")) >= 2:
                break
            time.sleep(0.05)
        ray_processes = descendants(driver.pid)
        assert any("raylet" in cmdline(p) for p in ray_processes), (
            "the driver's Ray was not running"
        )
        driver.send_signal(sig)
        out, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    if sig == signal.SIGINT:
        # exit code 130 as for any Ctrl-C, and a resume command that works when pasted
        hint = f"backdoor-sweep resume interrupted --store {store.root.resolve()}"
        assert driver.returncode == 130 and hint in err, err[-2000:]
    else:
        assert driver.returncode == -signal.SIGKILL
    # gcs_server, raylet and the workers fate-share with the driver and go at once. After a
    # SIGKILL the raylet's two agents outlive it by Ray's fixed 60 s attempt to report its death
    # to the (dead) GCS, then exit by themselves; the test does not wait for that.
    left = {pid: cmdline(pid).strip() for pid in wait_gone(ray_processes, 20)}
    kill_pids(list(left))
    expected = {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} if sig == signal.SIGKILL else set()
    assert set(left.values()) <= expected, f"Ray processes outlived their driver: {left}"

    n_before = len(store.done_trials("interrupted"))
    assert 2 <= n_before < 6, f"{n_before} of 6 trials were stored when the driver stopped"
    resumed = subprocess.run(
        [*CLI, "resume", "interrupted", "--store", str(store.root), "--quiet"],
        env=cli_env(ray_tmp),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-4000:]
    assert f"{n_before * 12} already in the store" in resumed.stdout
    df = store.read_table("trials", "interrupted")
    assert sorted(df["result_id"]) == expected_ids(spec)  # every (configuration, seed) exactly once
    assert (df["status"] == "ok").all()
    curves = store.read_table("curves", "interrupted")
    assert not curves.duplicated(["result_id", "beta"]).any()
    assert set(curves["result_id"]) == set(df["result_id"])
    assert store.read_meta("interrupted")["status"] == "finished"
    assert verify_store(store).ok


@pytest.mark.slow
def test_two_sweeps_writing_to_one_store_at_once_do_not_interfere(tmp_path, short_tmp):
    store = Store(tmp_path / "store")
    specs = {name: write_spec(tmp_path, name, smoke=True) for name in ("left", "right")}
    procs = {
        name: subprocess.Popen(
            [*CLI, "run", str(path), "--store", str(store.root), "--quiet"],
            env=cli_env(short_tmp()),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, path in specs.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{name}: {err[-3000:]}"
    for name, path in specs.items():
        df = store.read_table("trials", name)
        assert sorted(df["result_id"]) == expected_ids(path) and set(df["sweep"]) == {name}
    report = verify_store(store)
    assert report.ok and sorted(report.sweeps) == ["left", "right"], report.problems


def test_a_second_run_of_a_sweep_being_written_is_refused(tmp_path):
    spec = write_spec(tmp_path, "busy", smoke=True)
    store = Store(tmp_path / "store")
    with store.lock("busy"):
        out = subprocess.run(
            [*CLI, "run", str(spec), "--store", str(store.root), "--quiet"],
            env=cli_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert store.is_locked("busy")
    assert out.returncode == 2
    assert (
        out.stderr.strip()
        == f"error: sweep 'busy' is being written by pid {os.getpid()} on {os.uname().nodename}; wait for it to finish or pass another --name"
    )
    assert not store.is_locked("busy") and not store.exists("busy")


@pytest.mark.slow
def test_rerunning_a_finished_sweep_asks_for_resume_or_overwrite(ray_runtime, tmp_path):
    spec = smoke_spec(tmp_path / "store", "finished")
    first = run_sweep(spec, show_progress=False)
    store = Store(spec.store)
    ids = sorted(store.read_table("trials", "finished")["result_id"])
    spec_file = tmp_path / "finished.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    out = subprocess.run(
        [*CLI, "run", str(spec_file), "--quiet"],
        env=cli_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2
    assert (
        "already exists" in out.stderr and "--resume" in out.stderr and "--overwrite" in out.stderr
    )
    again = run_sweep(spec, resume=True, show_progress=False)
    assert (again.n_ok, again.n_skipped) == (0, first.n_ok)
    replaced = run_sweep(spec, overwrite=True, show_progress=False)
    assert replaced.n_ok == first.n_ok
    assert sorted(store.read_table("trials", "finished")["result_id"]) == ids
