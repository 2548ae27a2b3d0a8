"""Searches end to end on a real Ray runtime: random search, Optuna, slope screening, resume.

Tiny problems (digits 7 vs 1, two poison rates, two seeds) so each runs in seconds of work; the
interrupted Optuna search is the real CLI in a subprocess, killed with SIGKILL once two
configurations are stored, then resumed.
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

from analysis.select import select_robust
from sweep.launcher import run_sweep
from sweep.searcher import STATE_FILE, make_searcher, restore_state
from sweep.spec import DEFAULT_SPEC, parse_spec
from sweep.store import Store
from sweep.verify import verify_store
from tests.local_cluster import descendants, kill_pids, wait_gone

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
OBJECTIVES = [{"metric": "clean_acc", "mode": "max"}, {"metric": "worst_asr", "mode": "min"}]


def tiny(store: Path, name: str, grid: dict, search: dict) -> dict:
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    raw.update(name=name, store=str(store), seeds=[0, 1], curves={"enabled": False})
    raw["grid"] = {**grid, "poison_rate": [0, 0.1], "trigger_size": [2]}
    raw["search"] = search
    return raw


def test_random_search_stores_each_sampled_configuration_against_every_attack(
    tmp_path, ray_runtime
):
    grid = {"C": {"loguniform": [0.1, 100]}, "gamma": [0.001, 0.01]}
    spec = parse_spec(tiny(tmp_path, "rand", grid, {"algorithm": "random", "num_samples": 3}))
    outcome = run_sweep(spec, show_progress=False)
    store = Store(tmp_path)
    df = store.read_table("trials", "rand")
    assert outcome.complete and outcome.n_ok == len(df) == 3 * 2 * 2
    assert df["trial_id"].nunique() == 3 and set(df["sampler"]) == {"random"}
    assert df["C"].between(0.1, 100).all() and df["result_id"].is_unique
    for _, g in df.groupby("trial_id"):
        assert sorted(zip(g["poison_rate"], g["seed"], strict=False)) == [
            (0, 0),
            (0, 1),
            (0.1, 0),
            (0.1, 1),
        ]
    assert verify_store(store).ok
    assert len(select_robust(df, objective="worst_asr").table) == 3
    again = run_sweep(spec, resume=True, show_progress=False)
    assert again.n_skipped == 12 and again.n_ok == 0


def test_optuna_search_samples_scores_and_keeps_its_state(tmp_path, ray_runtime, capsys):
    grid = {"C": {"loguniform": [0.01, 100]}, "gamma": {"loguniform": [0.001, 1]}}
    search = {
        "algorithm": "optuna",
        "num_samples": 4,
        "max_concurrent": 1,
        "seed": 3,
        "objectives": OBJECTIVES,
    }
    spec = parse_spec(tiny(tmp_path, "opt", grid, search))
    outcome = run_sweep(spec, show_progress=False)
    store = Store(tmp_path)
    df = store.read_table("trials", "opt")
    assert outcome.complete and outcome.n_ok == len(df) == 4 * 2 * 2
    assert set(df["sampler"]) == {"optuna_nsga2"} and df["trial_id"].nunique() == 4
    meta = store.read_meta("opt")
    assert meta["status"] == "finished" and meta["search"]["configurations"] == 4
    assert (store.sweep_dir("opt") / STATE_FILE).is_file()
    assert verify_store(store).ok
    # the searcher was told each trial's objectives as the robust choice computes them
    searcher = make_searcher(spec)
    assert restore_state(searcher, store.sweep_dir("opt"))
    told = {round(t.params["C"], 12): t.values for t in searcher._ot_study.trials}
    for _, g in df.groupby("trial_id"):
        sel = select_robust(g, objective="worst_asr", axes=["C", "gamma"])
        want = [sel.metrics["clean_acc"]["mean"], sel.metrics["worst_asr"]["mean"]]
        assert told[round(float(g["C"].iloc[0]), 12)] == pytest.approx(want)
    # heatmap of sampled points is a scatter; the report has a search part
    from analysis.report import report_html

    html = report_html(store, ["opt"])
    assert "<h3>search</h3>" in html and "Pareto front of the searched configurations" in html


def test_slope_screen_runs_the_attack_grid_on_the_kept_configurations_only(tmp_path, ray_runtime):
    grid = {"C": [0.1, 1, 10], "gamma": [0.001, 0.01]}
    search = {"strategy": "slope_screen", "keep": 2}
    spec = parse_spec(tiny(tmp_path, "screen", grid, search))
    outcome = run_sweep(spec, show_progress=False)
    store = Store(tmp_path)
    df = store.read_table("trials", "screen")
    one, two = df[df["stage"] == "screen"], df[df["stage"] == "full"]
    assert outcome.complete and len(one) == 6 * 2 and len(two) == 2 * 2 * 2
    assert set(one["poison_rate"]) == {0.1} and one["slope"].notna().all()
    # the kept ones, recomputed from the stored stage-one rows
    means = one.groupby(["C", "gamma"])[["clean_acc", "slope"]].mean().reset_index()
    accurate = means[means["clean_acc"] >= means["clean_acc"].max() - 0.01]
    want = accurate.sort_values(["slope", "clean_acc"], ascending=[True, False]).head(2)
    assert set(zip(two["C"], two["gamma"], strict=False)) == set(
        zip(want["C"], want["gamma"], strict=False)
    )
    meta = store.read_meta("screen")["search"]
    assert meta["stage_results"] == {"screen": 12, "full": 8} and meta["full_grid_results"] == 24
    # stage one trains each result once (the beta = 0 model); curves are off, so every stage-two
    # result trains once too and the full grid's 24 fits are exact
    assert (one["n_fits"] == 1).all() and (two["n_fits"] == 1).all()
    # ... on the probe's training set without its poison, which n_poison still counts
    probe = two[two["poison_rate"] == 0.1]
    assert set(one["n_train"] + one["n_poison"]) == set(probe["n_train"])
    assert set(one["n_poison"]) == set(probe["n_poison"])
    curves = store.read_table("curves", "screen")
    assert set(curves["beta"]) == {0.0} and set(curves["result_id"]) == set(one["result_id"])
    assert meta["stage_fits"] == {"screen": 12, "full": 8}
    assert meta["full_grid_fits"] == 24 and not meta["full_grid_fits_estimated"]
    assert meta["fits_fraction_of_full_grid"] == pytest.approx(20 / 24, abs=1e-4)
    sel = select_robust(df, objective="worst_asr")
    assert len(sel.table) == 2  # stage one never competes
    assert verify_store(store).ok
    # resume after stage one: exactly stage two runs again, with the same results
    for trial_id in set(two["trial_id"]):
        store.part_path("screen", "trials", trial_id).unlink()
    store.update_meta("screen", status="incomplete")
    again = run_sweep(spec, resume=True, show_progress=False)
    assert again.n_skipped == 12 and again.n_ok == 8 and again.complete
    df2 = store.read_table("trials", "screen").sort_values("result_id")
    assert list(df2["result_id"]) == sorted(df["result_id"])
    assert list(df2["asr"]) == list(df.sort_values("result_id")["asr"])


@pytest.fixture
def short_tmp():
    """A short folder for Ray's session files (its socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bss", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_optuna_search_killed_mid_run_resumes_where_it_stopped(tmp_path, short_tmp):
    grid = {"C": {"loguniform": [0.01, 100]}, "gamma": [0.001, 0.01]}
    search = {
        "algorithm": "optuna",
        "num_samples": 6,
        "max_concurrent": 1,
        "objectives": [{"metric": "worst_asr", "mode": "min"}],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny(tmp_path / "store", "killed", grid, search)))
    store = Store(tmp_path / "store")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": str(short_tmp)}
    cli = [sys.executable, "-m", "backdoor_sweep.cli"]
    driver = subprocess.Popen(
        [*cli, "run", str(path), "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 300
        while driver.poll() is None and time.monotonic() < deadline:
            if store.exists("killed") and len(store.parts("killed")) >= 2:
                break
            time.sleep(0.02)
        ray_processes = descendants(driver.pid)
        driver.send_signal(signal.SIGKILL)
        driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    kill_pids(list(wait_gone(ray_processes, 20)))  # Ray's agents outlive a SIGKILLed driver
    n_before = len(store.done_trials("killed"))
    assert 2 <= n_before < 6, f"{n_before} of 6 configurations were stored when it was killed"
    assert store.read_meta("killed")["status"] == "running"  # killed: nobody said otherwise

    resumed = subprocess.run(
        [*cli, "resume", "killed", "--store", str(store.root), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{6 - n_before} of 6 configurations to run ({n_before} stored" in resumed.stderr
    df = store.read_table("trials", "killed")
    assert df["trial_id"].nunique() == 6 and len(df) == 6 * 4 and df["result_id"].is_unique
    assert (df["status"] == "ok").all()
    assert store.read_meta("killed")["status"] == "finished"
    assert verify_store(store).ok
    searcher = make_searcher(parse_spec(store.read_meta("killed")["spec"]))
    assert restore_state(searcher, store.sweep_dir("killed"))
    complete = [t for t in searcher._ot_study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6  # every stored configuration, told once


@pytest.mark.parametrize(
    "search",
    [
        {"strategy": "slope_screen", "keep": 1},
        {
            "algorithm": "optuna",
            "num_samples": 2,
            "max_concurrent": 1,
            "objectives": [{"metric": "worst_asr", "mode": "min"}],
        },
    ],
    ids=["slope_screen", "optuna"],
)
def test_a_search_leaves_the_callers_signal_handlers_in_place(tmp_path, ray_runtime, search):
    """Tune installs SIGINT and SIGUSR1 handlers and leaves them after the run; a search puts
    the caller's back, as a grid does (else the next Ctrl-C in this process does nothing)."""
    import signal

    def mine(signum, frame):  # a caller's own handler
        raise KeyboardInterrupt

    grid = {"C": [0.1, 1], "gamma": [0.01]}
    spec = parse_spec(tiny(tmp_path, "signals", grid, search))
    before = signal.signal(signal.SIGINT, mine), signal.signal(signal.SIGUSR1, mine)
    try:
        assert run_sweep(spec, show_progress=False).complete
        assert signal.getsignal(signal.SIGINT) is mine
        assert signal.getsignal(signal.SIGUSR1) is mine
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGUSR1, before[1])
