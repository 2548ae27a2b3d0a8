"""Parallel coordinates over the grid, and the privacy–robustness–accuracy view of DP sweeps."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.parallel import parallel_info, render_parallel
from analysis.privacy import epsilon_label, privacy_info, render_privacy
from backdoor_sweep.errors import SweepError


def grid() -> pd.DataFrame:
    rows = []
    for C, trigger, rate, seed in itertools.product(
        (10.0, 0.1, 1.0), ("patch", "four_corner"), (0.0, 0.1), (0, 1)
    ):
        rows.append(
            {
                "learner": "logistic",
                "C": C,
                "trigger": trigger,
                "poison_rate": rate,
                "seed": seed,
                "status": "ok",
                "n_poison": int(rate * 100),
                "clean_acc": 0.5 if C == 0.1 else 0.95 + 0.001 * seed,
                "asr": rate * C / 10 + 0.01 * seed,
            }
        )
    return pd.DataFrame(rows)


def test_one_line_per_cell_axes_as_sorted_codes_and_the_tolerance_axis():
    info = parallel_info(grid(), clean_tolerance=0.01)
    labels = [d.label for d in info.dimensions]
    assert labels == ["C", "trigger", "poison_rate", "accurate (±0.01)", "clean_acc", "asr"]
    assert len(info.cells) == 3 * 2 * 2
    c = info.dimensions[0]
    assert c.tick_text == ["0.1", "1", "10"]  # sorted by value, evenly spaced
    assert set(c.values) == {0.0, 1.0, 2.0}
    assert info.dimensions[1].tick_text == ["four_corner", "patch"]
    accurate = dict(zip(info.cells["C"], info.dimensions[3].values, strict=True))
    assert accurate == {0.1: 0.0, 1.0: 1.0, 10.0: 1.0}
    asr = info.dimensions[-1]
    assert asr.range == (0.0, 1.0)
    row = info.cells[(info.cells["C"] == 10.0) & (info.cells["poison_rate"] == 0.1)].iloc[0]
    assert row["asr"] == pytest.approx(0.1 + 0.005)  # mean over the two seeds


def test_render_parallel_smoke():
    fig = render_parallel(parallel_info(grid()))
    pc = fig.data[0]
    assert pc.type == "parcoords" and len(pc.dimensions) == 6
    assert pc.line.reversescale is True and pc.line.cmin == 0 and pc.line.cmax == 1


def test_parallel_needs_a_recorded_metric():
    with pytest.raises(SweepError, match="got 'nope'"):
        parallel_info(grid(), ["nope"])


def dp_frame() -> pd.DataFrame:
    rows = []
    for noise, rate, seed in itertools.product((0.0, 0.5, 1.0), (0.05, 0.2), (0, 1)):
        rows.append(
            {
                "learner": "cnn",
                "defence": "dp_sgd",
                "dp_noise": noise,
                "poison_rate": rate,
                "seed": seed,
                "status": "ok",
                "n_poison": int(rate * 100),
                "clean_acc": 0.99 - 0.3 * noise,
                "asr": 0.9 - 0.4 * noise + rate,
                "dp_epsilon": np.nan if noise == 0 else 4.0 / noise,
            }
        )
    return pd.DataFrame(rows)


def test_privacy_orders_by_epsilon_with_no_noise_as_infinity():
    info = privacy_info(dp_frame(), clean_tolerance=0.2)
    t = info.table
    assert list(t["dp_noise"]) == [0.0, 0.5, 1.0]  # least private first
    assert epsilon_label(t["epsilon"][0]) == "∞" and list(t["epsilon"][1:]) == [8.0, 4.0]
    assert info.delta == 1e-5  # the dp_sgd default: the spec did not set dp_delta
    assert list(t["eligible"]) == [True, True, False]  # 0.69 is more than 0.2 below 0.99
    assert t["worst_asr"][2] == pytest.approx(0.9 - 0.4 + 0.2)
    assert t["asr"][2] == pytest.approx(0.5 + 0.125)


def test_render_privacy_smoke():
    fig = render_privacy(privacy_info(dp_frame()), highlight={"dp_noise": 0.5})
    assert [t.name for t in fig.data] == ["clean accuracy", "mean ASR", "worst-case ASR"]
    assert fig.data[0].x[0].endswith("ε = ∞") and len(fig.layout.shapes) == 1


def test_privacy_refuses_sweeps_without_dp():
    with pytest.raises(SweepError, match="did not use DP-SGD"):
        privacy_info(grid())
