"""Robust selection on small hand-made frames: eligibility, objectives, worst case, seed spread."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.select import attack_axes, choice_axes, configuration_metric, select_robust
from backdoor_sweep.errors import SweepError
from tests.conftest import cli
from tests.handmade import write_sweep

T_975_DF2 = 4.302652729911275  # Student t 97.5% quantile, 2 degrees of freedom (3 seeds)


def grid_frame(
    clean: dict, asr: dict, seeds=(0, 1, 2), sizes=(1, 3), rates=(0.0, 0.1), seed_shift=None
) -> pd.DataFrame:
    """Rows for every (C, trigger_size, poison_rate, seed); ``asr[(C, size)]`` applies when poisoned.

    ``seed_shift[s]`` is added to every metric of seed ``s`` (a controlled seed spread).
    """
    rows = []
    for C, size, rate, s in itertools.product(clean, sizes, rates, seeds):
        shift = seed_shift[s] if seed_shift else 0.0
        rows.append(
            {
                "learner": "svm_rbf",
                "C": C,
                "gamma": 0.1,
                "trigger_size": size,
                "poison_rate": rate,
                "seed": s,
                "status": "ok",
                "n_poison": int(rate * 100),
                "clean_acc": clean[C] + shift,
                "asr": (asr[(C, size)] if rate > 0 else 0.0) + shift,
            }
        )
    return pd.DataFrame(rows)


CLEAN = {0.1: 0.70, 1.0: 0.95, 10.0: 0.96, 100.0: 0.96}
ASR = {
    (0.1, 1): 0.05,
    (0.1, 3): 0.05,  # lowest ASR but far from the best clean accuracy
    (1.0, 1): 0.10,
    (1.0, 3): 0.70,  # mean 0.40, worst 0.70
    (10.0, 1): 0.45,
    (10.0, 3): 0.45,  # mean 0.45, worst 0.45
    (100.0, 1): 0.60,
    (100.0, 3): 0.90,
}


def test_axes_split_defender_from_attacker():
    df = grid_frame(CLEAN, ASR).assign(tol=1e-7)
    assert choice_axes(df) == ["C"]  # gamma and tol are fixed
    assert attack_axes(df) == ["trigger_size", "poison_rate"]


def test_lowest_mean_asr_among_configurations_within_tolerance():
    sel = select_robust(grid_frame(CLEAN, ASR), clean_tolerance=0.02, objective="asr")
    assert sel.choice == {"C": 1.0}
    assert sel.metrics["asr"]["mean"] == pytest.approx(0.40)
    assert sel.metrics["clean_acc"]["mean"] == pytest.approx(0.95)
    elig = sel.table.set_index("C")["eligible"]
    assert not elig[0.1] and elig[1.0] and elig[10.0] and elig[100.0]
    assert "3 of 4 configurations" in sel.reason and "C=1" in sel.reason


def test_tolerance_is_inclusive_and_narrowing_it_changes_the_choice():
    assert select_robust(grid_frame(CLEAN, ASR), clean_tolerance=0.01).choice == {"C": 1.0}
    assert select_robust(grid_frame(CLEAN, ASR), clean_tolerance=0.005).choice == {"C": 10.0}
    assert select_robust(grid_frame(CLEAN, ASR), clean_tolerance=0.5).choice == {"C": 0.1}


def test_worst_case_asr_prefers_the_configuration_without_a_weak_attack_setting():
    df = grid_frame(CLEAN, ASR)
    sel = select_robust(df, clean_tolerance=0.02, objective="worst_asr")
    assert sel.choice == {"C": 10.0}
    assert sel.metrics["worst_asr"]["mean"] == pytest.approx(0.45)
    worst = configuration_metric(df, ["C"], "worst_asr").set_index("C")
    assert worst.loc[1.0, "mean"] == pytest.approx(0.70)
    assert (
        worst.loc[1.0, "worst_at_trigger_size"] == 3
        and worst.loc[1.0, "worst_at_poison_rate"] == 0.1
    )
    assert worst.loc[100.0, "mean"] == pytest.approx(0.90)


def test_unpoisoned_settings_count_for_clean_accuracy_but_not_for_asr():
    df = grid_frame(CLEAN, ASR)
    df.loc[df["poison_rate"] == 0, "clean_acc"] += 0.04  # clean accuracy is higher without poison
    asr = configuration_metric(df, ["C"], "asr").set_index("C")
    assert asr.loc[1.0, "mean"] == pytest.approx(
        0.40
    )  # the ASR 0 of the unpoisoned rows is not averaged in
    clean = configuration_metric(df, ["C"], "clean_acc").set_index("C")
    assert clean.loc[1.0, "mean"] == pytest.approx(0.97)  # half the rows +0.04


def test_spread_is_between_seeds_with_a_t_interval():
    df = grid_frame(CLEAN, ASR, seed_shift={0: -0.1, 1: 0.0, 2: 0.1})
    sel = select_robust(df, clean_tolerance=0.02, objective="asr")
    m = sel.metrics["asr"]
    assert m["n"] == 3  # seeds, not seeds x attack settings
    assert m["std"] == pytest.approx(0.1)
    half = T_975_DF2 * 0.1 / math.sqrt(3)
    assert m["ci_low"] == pytest.approx(0.40 - half) and m["ci_high"] == pytest.approx(0.40 + half)
    # the attack settings' own spread (0.10 vs 0.70) is not in the seed spread
    assert configuration_metric(grid_frame(CLEAN, ASR), ["C"], "asr").set_index("C").loc[
        1.0, "std"
    ] == pytest.approx(0.0)


def test_runner_up_inside_the_interval_is_reported_as_not_separated():
    noisy = select_robust(
        grid_frame(CLEAN, ASR, seed_shift={0: -0.1, 1: 0.0, 2: 0.1}), clean_tolerance=0.02
    )
    assert noisy.runner_up["choice"] == {"C": 10.0}
    assert "do not separate" in noisy.reason
    clear = select_robust(
        grid_frame(CLEAN, ASR, seed_shift={0: -0.001, 1: 0.0, 2: 0.001}), clean_tolerance=0.02
    )
    assert "do not separate" not in clear.reason and "Runner-up: C=10" in clear.reason


def test_ties_go_to_the_higher_clean_accuracy():
    asr = {k: 0.3 for k in ASR}
    sel = select_robust(grid_frame(CLEAN, asr), clean_tolerance=0.05)
    assert sel.choice == {"C": 10.0}  # 10 and 100 tie on both; the order of C breaks the last tie


def test_failed_results_are_ignored():
    df = grid_frame(CLEAN, ASR)
    bad = df.iloc[:4].assign(status="error", clean_acc=np.nan, asr=0.0, C=1000.0)
    sel = select_robust(pd.concat([df, bad], ignore_index=True), clean_tolerance=0.02)
    assert 1000.0 not in sel.table["C"].tolist()
    assert sel.choice == {"C": 1.0}


def test_explicit_axes_aggregate_over_the_others():
    df = pd.concat([grid_frame(CLEAN, ASR).assign(gamma=g) for g in (0.01, 0.1)], ignore_index=True)
    assert choice_axes(df) == ["C", "gamma"]
    sel = select_robust(df, clean_tolerance=0.02, axes=["C"])
    assert sel.axes == ["C"] and sel.choice == {"C": 1.0}
    assert sel.metrics["asr"]["n"] == 3


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"objective": "median"}, "objective must be one of asr, slope, worst_asr; got 'median'"),
        ({"clean_tolerance": 1.5}, "clean_tolerance must be in [0, 1]; got 1.5"),
        ({"objective": "slope"}, "'slope'"),
        ({"axes": ["nope"]}, "axes must be columns of the store; got 'nope'"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, needle):
    with pytest.raises(SweepError) as err:
        select_robust(grid_frame(CLEAN, ASR), **kwargs)
    assert needle in str(err.value)


def test_json_is_strict_and_complete_with_one_seed():
    sel = select_robust(grid_frame(CLEAN, ASR, seeds=(0,)), clean_tolerance=0.02)
    data = json.loads(
        sel.to_json(sweep="s")
    )  # strict: a NaN std would not parse as JSON null otherwise
    assert data["sweep"] == "s" and data["choice"] == {"C": 1.0}
    assert data["metrics"]["asr"]["std"] is None and data["metrics"]["asr"]["n"] == 1
    assert len(data["candidates"]) == 4
    assert [c["C"] for c in data["candidates"] if c["rank"] == 1] == [1.0]
    assert "no spread" in data["reason"]


@pytest.mark.slow
def test_cli_select_table_and_json(tmp_path, cli_env):
    write_sweep(tmp_path, "hand", with_slope=True)
    res = cli(
        "select", "--store", str(tmp_path), "--metric", "slope", "--format", "json", env=cli_env
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert (
        data["sweep"] == "hand"
        and data["objective"] == "slope"
        and set(data["choice"]) == {"C", "gamma"}
    )
    table = cli(
        "select",
        "--store",
        str(tmp_path),
        "--metric",
        "worst_asr",
        "--clean-tolerance",
        "0.05",
        env=cli_env,
    )
    assert table.returncode == 0, table.stderr
    assert "worst_asr" in table.stdout and "95% interval" in table.stdout
    bad = cli("select", "--store", str(tmp_path), "--metric", "nope", env=cli_env)
    assert (
        bad.returncode == 2
        and bad.stderr.count("\n") == 1
        and "--metric must be one of" in bad.stderr
    )
