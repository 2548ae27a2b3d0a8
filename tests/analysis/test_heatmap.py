"""Heatmap data (any metric, two axes, facets, mean/worst/best) and one smoke test per figure."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.heatmap import default_axes, heatmap_info, render_heatmap
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


# -- default axes from the grid, errors with close matches, tolerance and the chosen cell -------
def preset_frame(grid: dict, learner: str = "svm_linear", **fixed) -> pd.DataFrame:
    rows = []
    for values in itertools.product(*grid.values(), (0, 1)):
        row = dict(zip([*grid, "seed"], values, strict=True))
        rate = row.get("poison_rate", 0.1)
        rows.append(
            {
                "learner": learner,
                **fixed,
                **row,
                "status": "ok",
                "n_poison": int(rate * 100),
                "clean_acc": 0.9,
                "asr": rate,
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "grid, fixed, expected",
    [
        # linear SVM, ridge, logistic: C and the attack
        (
            {"C": [0.1, 1], "poison_rate": [0, 0.1], "trigger_size": [1, 2]},
            {},
            ("C", "poison_rate", ["trigger_size"]),
        ),
        # DP-SGD: the noise against the poison rate
        (
            {"dp_noise": [0.0, 1.0], "poison_rate": [0.02, 0.1]},
            {"learner": "cnn", "defence": "dp_sgd"},
            ("dp_noise", "poison_rate", []),
        ),
        # the DP baseline: one axis, one row
        ({"poison_rate": [0.02, 0.1]}, {"learner": "cnn"}, ("poison_rate", None, [])),
        # CNN regularisers: four learner axes, no attack axis
        (
            {
                "logit_squeeze_weight": [0.0, 0.05],
                "manifold_mixup_weight": [0.0, 1.0],
                "contrastive_weight": [0.0, 0.05],
                "snnl_weight": [0.0, 1.0],
            },
            {"learner": "cnn"},
            (
                "logit_squeeze_weight",
                "manifold_mixup_weight",
                ["contrastive_weight", "snnl_weight"],
            ),
        ),
    ],
)
def test_default_axes_come_from_the_grid(grid, fixed, expected):
    learner = fixed.pop("learner", "svm_linear")
    df = preset_frame(grid, learner, **fixed)
    assert default_axes(df) == expected
    x, y, facets = expected
    info = heatmap_info(df, x=x, y=y, metric="asr", facet=facets or None)
    assert len(info.panels) == max(1, 2 ** len(facets))
    if y is None:
        assert info.y_values == ["all"] and info.panels[0].z.shape == (1, 2)
    assert render_heatmap(info).data  # draws


def test_unknown_columns_name_a_few_close_matches_not_every_column():
    df = frame().assign(**{f"extra_{k}": 0 for k in range(50)})
    with pytest.raises(SweepError) as err:
        heatmap_info(df, x="gama", y="C", metric="asr")
    text = str(err.value)
    assert text == "--x must be a column of the store; got 'gama' (did you mean gamma?)"
    with pytest.raises(SweepError) as err:
        heatmap_info(df, x="C", y="gamma", metric="zzzz")
    assert "extra_" not in str(err.value) and "did you mean" not in str(err.value)


def test_cells_outside_the_tolerance_are_excluded_and_the_chosen_one_marked():
    df = frame()  # clean_acc = 1 - (C/10 + gamma)/10 - size/100: C=1, gamma=0.1 is the best
    info = heatmap_info(
        df,
        x="C",
        y="gamma",
        metric="asr",
        facet="poison_rate",
        clean_tolerance=0.05,
        mark={"C": 1, "gamma": 0.1, "poison_rate": 0.05},
    )
    assert info.best_clean == pytest.approx(1 - 0.02 - 0.02)  # C=1, gamma=0.1, mean size 2
    p = info.panels[0]
    # C=10, gamma=1.0: 0.2 below the best; C=1, gamma=1.0 and C=10, gamma=0.1: 0.09 below
    excluded = {
        (info.y_values[i], info.x_values[j]) for i, j in zip(*np.nonzero(p.excluded), strict=True)
    }
    assert excluded == {(1.0, 10), (1.0, 1), (0.1, 10)}
    assert p.excluded.tolist() == info.panels[1].excluded.tolist()  # a property of the learner
    chosen = [
        (info.y_values[i], info.x_values[j]) for i, j in zip(*np.nonzero(p.chosen), strict=True)
    ]
    assert chosen == [(0.1, 1)] and not info.panels[1].chosen.any()  # the marked rate only
    fig = render_heatmap(info)
    greys = [t for t in fig.data if t.name == "outside the clean-accuracy tolerance"]
    assert len(greys) == 2 and len(fig.layout.shapes) == 1
    assert "grey: clean accuracy more than 0.05 below the best" in fig.layout.title.text


def test_colours_mean_the_same_in_every_map_and_the_title_says_what_was_averaged():
    asr = render_heatmap(heatmap_info(frame(), x="C", y="gamma", metric="asr"))
    acc = render_heatmap(heatmap_info(frame(), x="C", y="gamma", metric="clean_acc"))
    # rates and accuracies on [0, 1]; lower ASR and higher accuracy get the same (yellow) end
    for fig in (asr, acc):
        assert (fig.data[0].zmin, fig.data[0].zmax) == (0, 1)
    assert asr.data[0].reversescale is True and acc.data[0].reversescale is False
    assert "mean over seeds and trigger_size and poison_rate" in asr.layout.title.text
    worst = heatmap_info(frame(), x="C", y="gamma", metric="asr", agg="worst")
    assert (
        worst.aggregated_over == "worst over trigger_size, poison_rate (each the mean over seeds)"
    )
