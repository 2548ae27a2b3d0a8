"""Searches report their progress through ``on_progress`` as grids do, on a real Ray runtime.

A slope screen counts stage one's results, then adds stage two's once the screen has chosen
them; an Optuna search counts the results of the configurations it has budgeted. Either way the
done counts never go back and end at the results the store holds.
"""

from __future__ import annotations

import pytest

from sweep.launcher import run_sweep
from sweep.progress import Progress
from sweep.spec import parse_spec
from sweep.store import Store
from tests.sweep.test_search_e2e import OBJECTIVES, tiny

pytestmark = pytest.mark.slow


class Recorder:
    """An ``on_progress`` callback keeping (stored, done, total) at every step."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, int]] = []

    def __call__(self, progress: Progress) -> None:
        self.seen.append((progress.stored, progress.done, progress.total))

    def dones(self) -> list[int]:
        return [done for _, done, _ in self.seen]


def assert_counts_rise(rec: Recorder) -> None:
    dones = rec.dones()
    assert dones and dones == sorted(dones) and dones[0] >= 1
    assert all(done <= total for _, done, total in rec.seen)


def test_a_slope_screen_reports_stage_one_then_adds_stage_two(tmp_path, ray_runtime):
    grid = {"C": [0.1, 1, 10], "gamma": [0.01]}
    spec = parse_spec(tiny(tmp_path, "scr", grid, {"strategy": "slope_screen", "keep": 1}))
    rec = Recorder()
    outcome = run_sweep(spec, show_progress=False, on_progress=rec)
    df = Store(tmp_path).read_table("trials", "scr")
    assert outcome.complete and len(df) == 3 * 2 + 1 * 2 * 2
    assert_counts_rise(rec)
    totals = [total for _, _, total in rec.seen]
    # stage one's 6 results, then stage two's 4 added once the screen kept one configuration
    assert totals[0] == 6 and totals[-1] == 10 and totals == sorted(totals)
    assert {total for _, done, total in rec.seen if done <= 6} == {6}
    assert rec.seen[-1] == (0, len(df), len(df))
    # resumed after stage one: the stored results are counted apart, stage two's are the work
    store = Store(tmp_path)
    two = df[df["stage"] == "full"]
    for trial_id in set(two["trial_id"]):
        store.part_path("scr", "trials", trial_id).unlink()
    store.update_meta("scr", status="incomplete")
    again = Recorder()
    assert run_sweep(spec, resume=True, show_progress=False, on_progress=again).complete
    assert_counts_rise(again)
    assert again.seen[-1] == (6, 4, 4)
    assert 6 + again.dones()[-1] == len(store.read_table("trials", "scr"))


def test_an_optuna_search_reports_the_results_of_its_budget(tmp_path, ray_runtime):
    grid = {"C": {"loguniform": [0.01, 100]}, "gamma": [0.001, 0.01]}
    search = {
        "algorithm": "optuna",
        "num_samples": 3,
        "max_concurrent": 1,
        "seed": 5,
        "objectives": OBJECTIVES,
    }
    spec = parse_spec(tiny(tmp_path, "opt", grid, search))
    rec = Recorder()
    outcome = run_sweep(spec, show_progress=False, on_progress=rec)
    df = Store(tmp_path).read_table("trials", "opt")
    assert outcome.complete and len(df) == 3 * 2 * 2
    assert_counts_rise(rec)
    assert {total for _, _, total in rec.seen} == {12}  # 3 configurations x 2 attacks x 2 seeds
    assert rec.seen[-1] == (0, len(df), len(df))
