"""Intervals over seeds: Student's t, and for rates and accuracies never outside [0, 1].

Expected numbers are worked out by hand below: 3 seeds of 0.5, 1 and 1 have mean 5/6, standard
deviation sqrt(1/12) and t(0.975, 2 degrees of freedom) = 4.302653, so the t-interval is
5/6 ± 0.717109 = 0.116224 … 1.550442 — past 1 for a rate.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.aggregate import aggregate
from analysis.report import report_html
from analysis.select import select_robust
from tests.handmade import write_sweep

LOW, HIGH = 5 / 6 - 0.717109, 5 / 6 + 0.717109


def frame(metric: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"C": [1.0] * 3, "seed": [0, 1, 2], metric: [0.5, 1.0, 1.0], "status": "ok"}
    )


def test_a_rate_interval_is_clipped_to_one_and_marked():
    out = aggregate(frame("asr"), ["C"], "asr").iloc[0]
    assert out["mean"] == pytest.approx(5 / 6)
    assert out["ci_low"] == pytest.approx(LOW, abs=1e-6)
    assert out["ci_high"] == 1.0 and bool(out["ci_clipped"])


def test_an_interval_inside_zero_one_or_of_another_metric_is_not_clipped():
    slope = aggregate(frame("slope"), ["C"], "slope").iloc[0]
    assert slope["ci_high"] == pytest.approx(HIGH, abs=1e-6) and not slope["ci_clipped"]
    tight = frame("clean_acc").assign(clean_acc=[0.90, 0.91, 0.92])
    acc = aggregate(tight, ["C"], "clean_acc").iloc[0]
    assert acc["ci_low"] == pytest.approx(0.91 - 4.302653 * 0.01 / 3**0.5, abs=1e-6)
    assert not acc["ci_clipped"]
    low = aggregate(frame("asr").assign(asr=[0.0, 0.0, 0.5]), ["C"], "asr").iloc[0]
    assert low["ci_low"] == 0.0 and low["ci_clipped"]


def test_select_and_report_say_an_interval_was_clipped(tmp_path):
    store = write_sweep(tmp_path, "hand")
    df = store.read_table("trials", "hand")
    # one configuration with a large seed spread in ASR under poison
    spread = (df["C"] == 10.0) & (df["gamma"] == 0.01) & (df["poison_rate"] > 0)
    df.loc[spread, "asr"] = df.loc[spread, "seed"].map({0: 0.5, 1: 1.0, 2: 1.0})
    sel = select_robust(df, objective="worst_asr", axes=["C", "gamma"], clean_tolerance=1.0)
    row = sel.table[(sel.table["C"] == 10.0) & (sel.table["gamma"] == 0.01)].iloc[0]
    assert row["objective_ci_high"] == 1.0 and row["objective_ci_clipped"]
    assert all(sel.table["objective_ci_high"].dropna() <= 1.0)
    assert all(sel.table["clean_acc_ci_low"].dropna() >= 0.0)
    data = json.loads(sel.to_json())
    assert "ci_clipped" in data["metrics"]["worst_asr"]


def test_the_report_marks_a_clipped_interval_and_says_what_intervals_are(tmp_path):
    store = write_sweep(tmp_path, "hand")
    # the recommended configuration (C = 1, gamma = 0.1) gets ASR 0, 0, 0.3 over the seeds:
    # mean 0.1, t-interval 0.1 ± 0.430 reaches below 0
    part = store.read_table("trials", "hand")
    pick = part[(part["C"] == 1.0) & (part["gamma"] == 0.1)].copy()
    poisoned = pick["poison_rate"] > 0
    pick.loc[poisoned, "asr"] = pick.loc[poisoned, "seed"].map({0: 0.0, 1: 0.0, 2: 0.3})
    store.write_part("hand", "trials", pick["trial_id"].iloc[0], pick.to_dict("records"))
    sel = select_robust(store.read_table("trials", "hand"), objective="asr")
    assert sel.choice == {"C": 1.0, "gamma": 0.1}
    assert sel.metrics["asr"]["ci_low"] == 0.0 and sel.metrics["asr"]["ci_clipped"]
    assert "clipped to [0, 1]" in sel.reason
    html = report_html(store)
    assert "0.000 – " in html and "(clipped)" in html
    assert "those of rates and accuracies are cut to [0, 1]" in html
