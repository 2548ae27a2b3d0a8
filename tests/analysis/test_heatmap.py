"""Heatmap data (any metric, two axes, facets, mean/worst/best) and one smoke test per figure."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.heatmap import heatmap_info, render_heatmap
from backdoor_sweep.errors import SweepError


def frame() -> pd.DataFrame:
    """C x gamma x trigger_size x poison_rate x 2 seeds with values known cell by cell."""
    rows = []
    for C, g, size, rate, seed in itertools.product(
        (1, 10), (0.1, 1.0), (1, 3), (0.05, 0.1), (0, 1)
    ):
        base = C / 10 + g  # 0.2, 1.1, 1.1, 2.0
        rows.append(
            {
                "learner": "svm_rbf",
                "C": C,
                "gamma": g,
                "trigger_size": size,
                "poison_rate": rate,
                "seed": seed,
                "status": "ok",
                "n_poison": 5,
                "asr": base + size + 10 * rate + (0.5 if seed else -0.5),
                "clean_acc": 1.0 - base / 10 - size / 100,
            }
        )
    return pd.DataFrame(rows)


def cell(info, panel: int, x, y) -> tuple[float, float, int, str]:
    p = info.panels[panel]
    i, j = info.y_values.index(y), info.x_values.index(x)
    return p.z[i, j], p.std[i, j], p.n[i, j], p.where[i, j]


def test_mean_over_seeds_and_hidden_axes():
    info = heatmap_info(frame(), x="C", y="gamma", metric="asr")
    assert info.x_values == [1, 10] and info.y_values == [0.1, 1.0] and len(info.panels) == 1
    assert sorted(info.hidden) == ["poison_rate", "trigger_size"]
    z, std, n, _ = cell(info, 0, 10, 1.0)
    assert z == pytest.approx(2.0 + 2 + 0.75) and n == 8  # mean size 2, mean 10*rate 0.75
    values = [
        2.0 + s + 10 * r + d for s, r, d in itertools.product((1, 3), (0.05, 0.1), (-0.5, 0.5))
    ]
    assert std == pytest.approx(np.std(values, ddof=1))


def test_two_facets_give_one_panel_per_attack_setting():
    info = heatmap_info(
        frame(), x="C", y="gamma", metric="asr", facet=["poison_rate", "trigger_size"]
    )
    assert [p.facet_values for p in info.panels] == [
        {"poison_rate": 0.05, "trigger_size": 1},
        {"poison_rate": 0.05, "trigger_size": 3},
        {"poison_rate": 0.1, "trigger_size": 1},
        {"poison_rate": 0.1, "trigger_size": 3},
    ]
    assert info.hidden == []
    z, std, n, _ = cell(info, 3, 1, 0.1)  # rate 0.1, size 3, C=1, gamma=0.1
    assert (
        z == pytest.approx(0.2 + 3 + 1.0)
        and n == 2
        and std == pytest.approx(np.std([-0.5, 0.5], ddof=1))
    )
    assert info.panels[3].title == "poison_rate = 0.1, trigger_size = 3"


def test_worst_and_best_pick_a_hidden_setting_with_its_seed_spread():
    df = frame()
    worst = heatmap_info(df, x="C", y="gamma", metric="asr", agg="worst")
    z, std, n, where = cell(worst, 0, 1, 1.0)
    assert z == pytest.approx(1.1 + 3 + 1.0)  # largest ASR: size 3, rate 0.1
    assert n == 2 and std == pytest.approx(np.std([-0.5, 0.5], ddof=1))
    assert where == "trigger_size=3, poison_rate=0.1"
    best = heatmap_info(df, x="C", y="gamma", metric="asr", agg="best")
    assert cell(best, 0, 1, 1.0)[0] == pytest.approx(1.1 + 1 + 0.5)
    # accuracies: worst is the minimum
    acc = heatmap_info(df, x="C", y="gamma", metric="clean_acc", agg="worst")
    assert cell(acc, 0, 10, 1.0)[0] == pytest.approx(1.0 - 0.2 - 0.03)


def test_any_two_axes_and_missing_cells_are_nan():
    df = frame()
    df = df[~((df["C"] == 10) & (df["trigger_size"] == 3))]
    info = heatmap_info(df, x="trigger_size", y="C", metric="clean_acc", facet="gamma")
    assert info.x_values == [1, 3] and info.y_values == [1, 10] and len(info.panels) == 2
    z, _, n, _ = cell(info, 0, 3, 10)
    assert np.isnan(z) and n == 0


def test_failed_and_non_numeric_rows_are_ignored():
    df = frame()
    df.loc[0, "status"] = "error"
    df.loc[0, "asr"] = 99.0
    info = heatmap_info(df, x="C", y="gamma", metric="asr", facet=["poison_rate", "trigger_size"])
    assert np.nanmax(np.stack([p.z for p in info.panels])) < 99


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"metric": "nope"}, "--metric must be a column"),
        ({"x": "gamma"}, "--x and --y must be different"),
        ({"facet": "C"}, "--facet must name columns other than"),
        ({"agg": "median"}, "--agg must be one of mean, worst, best; got 'median'"),
    ],
)
def test_bad_arguments_name_the_option(kwargs, needle):
    args = {"x": "C", "y": "gamma", "metric": "asr", **kwargs}
    with pytest.raises(SweepError) as err:
        heatmap_info(frame(), **args)
    assert needle in str(err.value)


def test_render_places_two_facets_on_a_grid():
    info = heatmap_info(
        frame(), x="C", y="gamma", metric="asr", facet=["poison_rate", "trigger_size"]
    )
    fig = render_heatmap(info, zrange=(0, 1))
    assert len(fig.data) == 4
    # first facet along the columns, second along the rows: a 2 x 2 grid of axes
    axes = {(t.xaxis, t.yaxis) for t in fig.data}
    assert len(axes) == 4
    assert fig.data[0].zmin == 0 and fig.data[0].zmax == 1
    assert sum(bool(t.showscale) for t in fig.data) == 1


def test_render_wraps_one_facet_after_max_cols():
    df = pd.concat(
        [frame().assign(poison_rate=r) for r in (0.01, 0.02, 0.03, 0.04, 0.05)], ignore_index=True
    )
    info = heatmap_info(df, x="C", y="gamma", metric="clean_acc", facet="poison_rate", agg="worst")
    fig = render_heatmap(info, max_cols=2)
    assert len(fig.data) == 5
    assert fig.layout.height == 90 + 240 * 3  # three rows of panels
    assert "at %{customdata[2]}" in fig.data[0].hovertemplate
