"""Searches run where they are told: `run_sweep(store=...)` and ``resume --store``, with the plan.

A slope screen and an Optuna search on a real in-process Ray runtime, each started with
``store=`` a different folder than the spec's ``store``: every file lands in the given store, the
spec's folder is never created, ``on_start`` is told the search's budget once, and the CLI's
``resume NAME --store`` finishes the sweep in that store (printing the plan line first).
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.explain import rebuild
from sweep.launcher import SweepStart, run_sweep
from sweep.spec import parse_spec
from sweep.store import Store
from sweep.verify import verify_store
from tests.conftest import cli
from tests.sweep.test_search_e2e import tiny  # its `store` is the folder the run must not use

pytestmark = pytest.mark.slow


def run_in(spec, store: Store) -> tuple[object, list[SweepStart]]:
    starts: list[SweepStart] = []
    outcome = run_sweep(spec, store=store, on_start=starts.append, show_progress=False)
    return outcome, starts


def drop_one_trial(store: Store, name: str) -> str:
    """Delete the last trial's part file and mark the sweep incomplete (an interrupted run)."""
    df = store.read_table("trials", name)
    trial_id = str(df["trial_id"].iloc[-1])
    store.part_path(name, "trials", trial_id).unlink()
    store.update_meta(name, status="incomplete")
    return trial_id


def test_a_slope_screen_writes_to_the_given_store_and_resumes_there(tmp_path, ray_runtime):
    spec_store, given = tmp_path / "spec-store", Store(tmp_path / "given")
    search = {"strategy": "slope_screen", "keep": 1}
    spec = parse_spec(tiny(spec_store, "screen", {"C": [0.1, 10], "gamma": [0.01]}, search))
    outcome, starts = run_in(spec, given)
    assert outcome.complete and outcome.store is given
    # told once, before anything ran: 2 configurations screened, at most 1 kept
    assert len(starts) == 1
    start = starts[0]
    assert start.store is given and start.n_configurations == 2
    assert (start.n_trials, start.n_todo, start.n_stored) == (3, 3, 0)
    assert start.n_results == spec.n_results == 2 * 2 + 1 * 2 * 2 and not start.replaces
    df = given.read_table("trials", "screen")
    assert len(df) == outcome.n_ok == 8 and set(df["stage"]) == {"screen", "full"}
    assert given.read_meta("screen")["status"] == "finished" and verify_store(given).ok
    assert not spec_store.exists()
    # stage two's trial lost: `resume --store` runs it again in the given store
    drop_one_trial(given, "screen")
    res = cli("resume", "screen", "--store", str(given.root), "--quiet")
    assert res.returncode == 0, res.stderr
    plan = res.stdout.splitlines()[0]
    assert plan.startswith("sweep screen: ") and "in at most 3 trials" in plan, res.stdout
    assert "2 configurations searched (slope screen" in res.stdout
    assert "8 results already in the store" not in res.stdout  # 4 were lost with the trial
    assert f"store: {given.sweep_dir('screen').resolve()}" in res.stdout
    assert "ran 4 (4 ok, 0 error), 4 already in the store" in res.stdout
    assert len(given.read_table("trials", "screen")) == 8 and verify_store(given).ok
    assert not spec_store.exists()


def test_an_optuna_search_writes_to_the_given_store_and_resumes_there(tmp_path, ray_runtime):
    spec_store, given = tmp_path / "spec-store", Store(tmp_path / "given")
    grid = {"C": {"loguniform": [0.1, 10]}, "gamma": [0.001, 0.01]}
    search = {
        "algorithm": "optuna",
        "num_samples": 2,
        "max_concurrent": 1,
        "seed": 5,
        "objectives": [{"metric": "worst_asr", "mode": "min"}],
    }
    spec = parse_spec(tiny(spec_store, "opt", grid, search))
    outcome, starts = run_in(spec, given)
    assert outcome.complete and outcome.store is given
    assert len(starts) == 1
    start = starts[0]
    assert start.store is given and start.n_configurations == 2
    assert (start.n_trials, start.n_todo, start.n_stored) == (2, 2, 0)
    assert start.n_results == spec.n_results == 2 * 2 * 2
    df = given.read_table("trials", "opt")
    assert len(df) == outcome.n_ok == 8 and df["trial_id"].nunique() == 2
    assert (given.sweep_dir("opt") / "searcher.pkl").is_file() and verify_store(given).ok
    assert not spec_store.exists()
    # a resumed run that finds the search finished is told so, and runs nothing
    starts.clear()
    again = run_sweep(spec, store=given, resume=True, on_start=starts.append, show_progress=False)
    assert again.complete and again.n_ok == 0 and again.n_skipped == 8
    assert (starts[0].n_stored, starts[0].n_todo) == (8, 0)
    # one configuration lost: `resume --store` draws one more, in the given store
    drop_one_trial(given, "opt")
    res = cli("resume", "opt", "--store", str(given.root), "--quiet")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("sweep opt: ") and "in at most 2 trials" in lines[0], res.stdout
    assert "2 configurations searched (optuna_tpe)" in res.stdout
    assert "4 results already in the store; at most 1 trials to run" in res.stdout
    assert "ran 4 (4 ok, 0 error), 4 already in the store" in res.stdout
    df = given.read_table("trials", "opt")
    assert len(df) == 8 and df["trial_id"].nunique() == 2 and verify_store(given).ok
    assert given.read_meta("opt")["status"] == "finished"
    assert not spec_store.exists()
    # `explain` rebuilds a searched result from its stored row (numpy values) and the given store
    row = {c: df[c].iloc[0] for c in df.columns}
    assert isinstance(row["C"], np.floating)
    rebuilt = rebuild(given, "opt", row)
    assert rebuilt.config["result_id"] == row["result_id"]
    stored, again = rebuilt.reproduced["clean_acc"]
    assert again == pytest.approx(stored, abs=1e-12)
    assert not spec_store.exists()


def test_overwrite_replaces_a_stored_search_in_the_given_store(tmp_path, ray_runtime):
    spec_store, given = tmp_path / "spec-store", Store(tmp_path / "given")
    search = {"strategy": "slope_screen", "keep": 1}
    raw = tiny(spec_store, "screen", {"C": [0.1, 10], "gamma": [0.01]}, search)
    first = parse_spec(raw)
    run_in(first, given)
    raw["seeds"] = [0]  # another spec under the same name
    second = parse_spec(raw)
    starts: list[SweepStart] = []
    outcome = run_sweep(
        second, store=given, overwrite=True, on_start=starts.append, show_progress=False
    )
    assert [(s.replaces, s.n_stored, s.n_todo) for s in starts] == [(True, 0, 3)]
    assert outcome.complete and outcome.n_skipped == 0 and outcome.n_ok == 2 + 2
    df = given.read_table("trials", "screen")
    assert len(df) == 4 and set(df["seed"]) == {0} and verify_store(given).ok
    assert given.read_meta("screen")["spec"]["seeds"] == [0]
    assert not spec_store.exists()
