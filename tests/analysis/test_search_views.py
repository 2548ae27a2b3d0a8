"""Searches in pictures and words: sampled points, the best choice so far, the screen's rows.

Stores are built by hand (`tests.handmade`-style rows): sampled configurations with known
metrics, finished one after another.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from analysis.search_views import (
    best_so_far_info,
    decision_rows,
    is_grid,
    render_best_so_far,
    render_scatter,
    scatter_info,
    search_section,
    search_summary_lines,
)
from analysis.select import configuration_metric, select_robust

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def sampled(n: int = 6, seed: int = 0) -> pd.DataFrame:
    """n sampled (C, gamma) configurations × 2 poison rates × 2 trigger sizes × 2 seeds."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        C, gamma = float(10 ** rng.uniform(-2, 2)), float(10 ** rng.uniform(-3, 0))
        clean = 0.9 + 0.1 * (i % 3 == 0) - 0.002 * i
        for rate in (0.0, 0.1):
            for size in (1, 3):
                for s in (0, 1):
                    asr = 0.0 if rate == 0 else min(1.0, 0.1 * i + 0.05 * size + 0.01 * s)
                    rows.append(
                        {
                            "sweep": "s",
                            "trial_id": f"t{i}",
                            "result_id": f"r{i}-{rate}-{size}-{s}",
                            "learner": "svm_rbf",
                            "C": C,
                            "gamma": gamma,
                            "poison_rate": rate,
                            "trigger_size": size,
                            "seed": s,
                            "sampler": "optuna_nsga2",
                            "clean_acc": clean + 0.001 * s,
                            "asr": asr,
                            "n_poison": int(100 * rate),
                            "status": "ok",
                            "finished_at": T0 + timedelta(seconds=10 * i + s),
                        }
                    )
    return pd.DataFrame(rows)


def test_sampled_points_are_not_a_grid_and_a_product_is():
    df = sampled()
    assert not is_grid(df, "C", "gamma")
    assert is_grid(df, "poison_rate", "trigger_size")


def test_scatter_points_are_the_robust_choice_aggregates():
    df = sampled()
    info = scatter_info(df, "C", "gamma", "worst_asr")
    want = configuration_metric(df, ["C", "gamma"], "worst_asr")
    merged = info.points.merge(want, on=["C", "gamma"], suffixes=("", "_want"))
    assert len(merged) == 6
    assert np.allclose(merged["worst_asr"], merged["mean"])
    assert info.log_x and info.log_y  # sampled over decades
    fig = render_scatter(info)
    assert len(fig.data) == 1 and len(fig.data[0].x) == 6


def test_best_so_far_chooses_again_after_each_configuration_in_finishing_order():
    df = sampled()
    df.loc[df["trial_id"] == "t0", "finished_at"] = T0 + timedelta(hours=1)  # t0 finishes last
    info = best_so_far_info(df, "worst_asr", 0.01)
    assert info.fits == [8 * k for k in range(1, 7)]
    final = select_robust(df, objective="worst_asr", clean_tolerance=0.01)
    assert info.values[-1] == pytest.approx(final.metrics["worst_asr"]["mean"])
    first = select_robust(df[df["trial_id"] == "t1"], objective="worst_asr", axes=["C", "gamma"])
    assert info.values[0] == pytest.approx(first.metrics["worst_asr"]["mean"])
    assert len(render_best_so_far(info, full_grid=100).data) == 1


def test_a_screens_first_stage_counts_as_fits_but_never_as_a_choice():
    df = sampled()
    screen = df[df["poison_rate"] == 0.1].copy()
    screen["trial_id"] = "screen-" + screen["trial_id"]
    screen["result_id"] = "screen-" + screen["result_id"]
    screen["stage"] = "screen"
    screen["finished_at"] = T0 - timedelta(hours=1)
    screen["asr"] = 0.0  # would win every choice if it were read
    full = df[df["trial_id"].isin(["t1", "t2"])].assign(stage="full")
    both = pd.concat([screen, full], ignore_index=True)
    assert set(decision_rows(both)["stage"]) == {"full"}
    sel = select_robust(both, objective="worst_asr")
    assert sel.metrics["worst_asr"]["mean"] > 0
    info = best_so_far_info(both, "worst_asr")
    assert info.fits == [len(screen) + 8, len(screen) + 16]


def _screen_meta() -> dict:
    return {
        "spec": {"search": {"strategy": "slope_screen"}},
        "search": {
            "strategy": "slope_screen",
            "algorithm": "grid",
            "stage_results": {"screen": 60, "full": 108},
            "full_grid_results": 720,
            "probe": {"poison_rate": 0.2, "trigger_size": 3},
            "clean_tolerance": 0.01,
            "eligible": 9,
            "kept": [
                {"C": 10.0, "gamma": 0.01},
                {"C": 1.0, "gamma": 0.01},
                {"C": 100.0, "gamma": 0.001},
            ],
            "table": [
                {
                    "C": 10.0,
                    "gamma": 0.01,
                    "clean_acc": 1.0,
                    "slope": 0.1,
                    "eligible": True,
                    "kept": True,
                },
                {
                    "C": 0.01,
                    "gamma": 0.01,
                    "clean_acc": 0.5,
                    "slope": None,
                    "eligible": False,
                    "kept": False,
                },
            ],
        },
    }


def test_summary_lines_say_fits_per_stage_the_full_grid_and_the_kept():
    lines = search_summary_lines(_screen_meta())
    text = "\n".join(lines)
    assert (
        "stage one ran 60 results (2 configurations at the probe poison_rate=0.2, trigger_size=3"
        in text
    )
    assert "kept 3 of 9 configurations within 0.01 of the best clean accuracy" in text
    assert "C=10, gamma=0.01; C=1, gamma=0.01; C=100, gamma=0.001" in text
    assert "168 in all (23%) of the 720 results the full grid would have run" in text
    assert "learner trainings" not in text  # a store from before n_fits: no fits line
    meta = _screen_meta()
    meta["search"].update(
        stage_fits={"screen": 60, "full": 1620},
        full_grid_fits=10800,
        full_grid_fits_estimated=True,
    )
    assert (
        "learner trainings: 60 in stage one, 1620 in stage two; 1680 in all (16%) of about "
        "10800 for the full grid" in "\n".join(search_summary_lines(meta))
    )
    optuna = {"search": {"sampler": "optuna_tpe", "configurations": 12, "results": 432}}
    assert search_summary_lines(optuna) == [
        "  search: optuna_tpe sampled 12 configurations (432 results)"
    ]


def test_the_reports_search_part():
    df = sampled()
    assert search_section(df, {"spec": {"search": {"algorithm": "grid"}}}) == ""
    meta = {"spec": {"search": {"algorithm": "optuna"}}, "search": {"sampler": "optuna_nsga2"}}
    html = search_section(df, meta)
    assert (
        "<h3>search</h3>" in html and html.count('class="figure"') == 4
    )  # 2 scatters, Pareto, best
    screened = search_section(df.assign(stage="full"), _screen_meta())
    assert "the screen (stage one)" in screened and "kept" in screened
