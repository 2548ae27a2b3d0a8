"""The variance decomposition over the grid: main effects, interactions and seeds, exactly."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.importance import decompose, importance_info, render_importance
from backdoor_sweep.errors import SweepError


def frame(asr, seeds=(0, 1), seed_noise=0.0) -> pd.DataFrame:
    """C x trigger_size x poison_rate (0 unpoisoned) x seeds; ``asr(C, size, rate)``."""
    rows = []
    for C, size, rate, s in itertools.product((0.1, 1.0, 10.0), (1, 3), (0.0, 0.1, 0.2), seeds):
        rows.append(
            {
                "learner": "svm_linear",
                "C": C,
                "trigger_size": size,
                "poison_rate": rate,
                "seed": s,
                "status": "ok",
                "n_poison": int(rate * 100),
                "clean_acc": 0.9 + 0.01 * np.log10(C) + (seed_noise if s else -seed_noise),
                "asr": asr(C, size, rate) + (seed_noise if s else -seed_noise),
            }
        )
    return pd.DataFrame(rows)


def test_an_additive_metric_splits_into_main_effects_in_proportion():
    # ASR = a(C) + b(size): variances of a and b over the grid set the shares exactly
    a = {0.1: 0.0, 1.0: 0.3, 10.0: 0.6}
    b = {1: 0.0, 3: 0.2}
    imp = decompose(frame(lambda C, s, r: a[C] + b[s]), "asr")
    var_a, var_b = np.var(list(a.values())), np.var(list(b.values()))
    assert imp.main["C"] == pytest.approx(var_a / (var_a + var_b))
    assert imp.main["trigger_size"] == pytest.approx(var_b / (var_a + var_b))
    assert imp.main["poison_rate"] == pytest.approx(0.0)
    assert imp.interactions == pytest.approx(0.0, abs=1e-12) and imp.seeds == pytest.approx(0.0)
    assert imp.balanced and imp.n_cells == 3 * 2 * 2  # poisoned results only: rates 0.1, 0.2
    assert [a for a, _ in imp.ranked()][0] == "C"


def test_a_pure_interaction_has_no_main_effect():
    # +0.5 when (size 3) xor (rate 0.2): each axis alone averages it away
    imp = decompose(frame(lambda C, s, r: 0.5 * ((s == 3) != (r == 0.2))), "asr")
    assert imp.main["trigger_size"] == pytest.approx(0.0)
    assert imp.main["poison_rate"] == pytest.approx(0.0)
    assert imp.interactions == pytest.approx(1.0)


def test_seed_spread_gets_its_own_share_and_shares_sum_to_one():
    imp = decompose(frame(lambda C, s, r: 0.2 * (C == 10.0), seed_noise=0.05), "asr")
    assert imp.seeds > 0 and imp.main["C"] > imp.seeds
    total = sum(imp.main.values()) + imp.interactions + imp.seeds
    assert total == pytest.approx(1.0)
    # the seed share is the within-cell variance (±0.05 around each cell mean) over the total
    assert imp.seeds == pytest.approx(0.05**2 / imp.total_variance)


def test_clean_accuracy_uses_every_result_and_missing_cells_are_said():
    df = frame(lambda C, s, r: 0.1)
    info = importance_info(df)
    clean = next(m for m in info.metrics if m.metric == "clean_acc")
    assert clean.n_results == len(df) and clean.main["C"] == pytest.approx(1.0)
    assert info.notes == []
    info = importance_info(df.drop(index=[0]))
    assert info.notes and "unequal numbers of results" in info.notes[0]


def test_a_constant_metric_is_said_to_have_no_variance():
    info = importance_info(frame(lambda C, s, r: 0.3), ["asr"])
    (imp,) = info.metrics
    assert imp.total_variance == 0 and set(imp.main.values()) == {0.0}
    assert info.notes == ["asr is the same in every result: there is no variance to share"]


def test_a_metric_not_recorded_is_one_line():
    with pytest.raises(SweepError, match="--metric must be a metric this sweep recorded; got 'x'"):
        importance_info(frame(lambda C, s, r: 0.1), ["x"])


def test_render_importance_smoke():
    info = importance_info(frame(lambda C, s, r: 0.1 * np.log10(C) + 0.1 * s))
    fig = render_importance(info)
    assert [t.name for t in fig.data] == ["asr", "clean_acc"]
    assert list(fig.data[0].y) == ["C", "trigger_size", "poison_rate", "interactions", "seeds"]
