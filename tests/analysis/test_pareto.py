"""Pareto fronts: dominance on hand-made points, per-configuration aggregation, the figure."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.pareto import non_dominated, pareto_front, pareto_points, render_pareto
from backdoor_sweep.errors import SweepError


def test_non_dominated_on_hand_made_points():
    x = np.array([0.90, 0.95, 0.80, 0.85, 0.95, 0.70, np.nan])
    y = np.array([0.10, 0.30, 0.05, 0.20, 0.30, 0.05, 0.00])
    mask = non_dominated(x, y)
    # (0.85, 0.2) is beaten by (0.9, 0.1); (0.7, 0.05) by (0.8, 0.05) on x alone;
    # the two identical (0.95, 0.3) are both on the front; NaN never is
    assert mask.tolist() == [True, True, True, False, True, False, False]


def test_non_dominated_matches_brute_force_on_random_points():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, 40) / 5, rng.integers(0, 6, 40) / 5  # many ties on purpose
    expected = [
        not any(
            (x[j] >= x[i] and y[j] <= y[i]) and (x[j] > x[i] or y[j] < y[i]) for j in range(len(x))
        )
        for i in range(len(x))
    ]
    assert non_dominated(x, y).tolist() == expected


def frame() -> pd.DataFrame:
    """C x gamma; clean accuracy and ASR per configuration, two attack settings, two seeds."""
    clean = {(1, 0.1): 0.99, (1, 1.0): 0.95, (10, 0.1): 0.97, (10, 1.0): 0.90}
    asr = {(1, 0.1): 0.50, (1, 1.0): 0.20, (10, 0.1): 0.60, (10, 1.0): 0.10}
    rows = []
    for (C, g), size, seed in itertools.product(clean, (1, 3), (0, 1)):
        spread = 0.02 if size == 3 else -0.02  # the attack settings differ; their mean is asr[...]
        rows.append(
            {
                "learner": "svm_rbf",
                "C": C,
                "gamma": g,
                "trigger_size": size,
                "poison_rate": 0.1,
                "seed": seed,
                "status": "ok",
                "n_poison": 10,
                "clean_acc": clean[(C, g)],
                "asr": asr[(C, g)] + spread,
                "slope": asr[(C, g)] / 2,
            }
        )
    return pd.DataFrame(rows)


def test_front_per_configuration_best_clean_accuracy_first():
    front = pareto_front(frame(), x="clean_acc", y="asr")
    # (10, 0.1) is beaten by (1, 0.1): lower accuracy and higher ASR
    assert list(zip(front["C"], front["gamma"], strict=True)) == [(1, 0.1), (1, 1.0), (10, 1.0)]
    assert front["asr"].tolist() == pytest.approx([0.50, 0.20, 0.10])
    assert front["asr_n"].tolist() == [2, 2, 2]  # seeds
    assert "on_front" not in front


def test_points_carry_every_configuration_and_worst_case_changes_the_front():
    df = frame()
    points = pareto_points(df, y="asr")
    assert len(points) == 4 and points["on_front"].sum() == 3
    worst = pareto_front(df, y="worst_asr")
    assert worst["worst_asr"].tolist() == pytest.approx([0.52, 0.22, 0.12])
    df.loc[(df["C"] == 1) & (df["gamma"] == 1.0) & (df["trigger_size"] == 3), "asr"] = 0.95
    assert (1, 1.0) not in set(
        zip(*[pareto_front(df, y="worst_asr")[c] for c in ("C", "gamma")], strict=True)
    )


def test_bad_arguments():
    with pytest.raises(SweepError, match="x and y must differ"):
        pareto_points(frame(), x="asr", y="asr")
    with pytest.raises(SweepError, match="'nope'"):
        pareto_points(frame(), y="nope")
    with pytest.raises(SweepError, match="at least one varying"):
        pareto_points(frame()[lambda d: (d["C"] == 1) & (d["gamma"] == 0.1)])


def test_render_pareto_draws_front_and_recommendation():
    points = pareto_points(frame(), y="slope")
    fig = render_pareto(points, "clean_acc", "slope", highlight={"C": 1, "gamma": 1.0})
    names = [t.name for t in fig.data]
    assert names == ["dominated", "Pareto front", "recommended"]
    front = fig.data[1]
    assert list(front.x) == sorted(front.x) and len(front.x) == 3
    assert list(fig.data[2].text) == ["C=1, gamma=1"]


def test_render_pareto_greys_the_band_outside_the_clean_accuracy_tolerance():
    points = pareto_points(frame(), y="slope")
    best = points["clean_acc"].max()
    fig = render_pareto(points, "clean_acc", "slope", clean_tolerance=0.01)
    (band,) = fig.layout.shapes
    assert band.x1 == pytest.approx(best - 0.01) and band.x0 < points["clean_acc"].min()
    assert render_pareto(points, "clean_acc", "slope", clean_tolerance=1.0).layout.shapes == ()
