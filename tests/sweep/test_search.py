"""Searches without Ray: ranges, the search section, fixed random plans, the screen, objectives.

Bad input goes through the real CLI entry point (in this process, for speed): one line naming
the field, the value and what is allowed, exit code 2, and no store written.
"""

from __future__ import annotations

import math
import signal
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.select import configuration_metric
from backdoor_sweep.errors import SweepError
from sweep.plan import grid_configurations, outer_axes, plan_configurations, plan_trials
from sweep.sampling import ObjectiveTracker, configuration_key, sample_configurations
from sweep.screening import screen, screen_plans
from sweep.search import Range, n_keep, probe_setting
from sweep.spec import DEFAULT_SPEC, PRESETS_DIR, load_spec, parse_spec


def base() -> dict:
    return yaml.safe_load(DEFAULT_SPEC.read_text())


def searched(**search) -> dict:
    raw = base()
    raw["grid"]["C"] = {"loguniform": [1.0e-2, 1.0e2]}
    raw["search"] = {"algorithm": "random", "num_samples": 5, **search}
    return raw


# -- bad input: one line, exit 2, nothing written --------------------------------------------
def _cnn_screen() -> dict:
    raw = base()
    raw["learner"] = {"name": "cnn", "epochs": 1}
    raw["grid"] = {"lr": [0.01, 0.1], "poison_rate": [0.1]}
    raw["curves"] = {"enabled": False}
    raw["search"] = {"strategy": "slope_screen"}
    return raw


def _patched(raw: dict, grid=None, search=None) -> dict:
    raw["grid"].update(grid or {})
    raw["search"] = {**raw.get("search", {}), **(search or {})}
    return raw


BAD = {
    "low >= high": (
        _patched(searched(), grid={"C": {"loguniform": [10, 1]}}),
        "grid.C.loguniform must have low < high; got [10, 1]",
    ),
    "equal bounds": (
        _patched(searched(), grid={"gamma": {"uniform": [0.5, 0.5]}}),
        "grid.gamma.uniform must have low < high; got [0.5, 0.5]",
    ),
    "log range with 0": (
        _patched(searched(), grid={"C": {"loguniform": [0, 10]}}),
        "grid.C.loguniform must have 0 < low < high (a log range cannot include 0 or a negative "
        "number); got [0, 10]",
    ),
    "log range with a negative": (
        _patched(searched(), grid={"gamma": {"loguniform": [-1, 1]}}),
        "grid.gamma.loguniform must have 0 < low < high",
    ),
    "range on an attack axis": (
        _patched(searched(), grid={"poison_rate": {"uniform": [0.0, 0.2]}}),
        "grid.poison_rate must be a list of values: attack axes stay grids",
    ),
    "optuna without objectives": (
        _patched(searched(), search={"algorithm": "optuna"}),
        "search.objectives must name at least one metric for algorithm optuna",
    ),
    "unknown objective metric": (
        _patched(
            searched(),
            search={"algorithm": "optuna", "objectives": [{"metric": "accuracy", "mode": "max"}]},
        ),
        "search.objectives[0].metric must be one of clean_acc, backdoor_acc, asr, "
        "asr_excl_pred, robust_acc, slope, slope_fd, worst_asr, worst_asr_excl_pred, "
        "worst_backdoor_acc, worst_slope, worst_slope_fd; got 'accuracy'",
    ),
    "slope_screen for a network": (
        _cnn_screen(),
        "search.strategy slope_screen needs a learner with a backdoor learning slope "
        "(logistic, ridge, svm_linear, svm_rbf); got learner 'cnn'",
    ),
    "num_samples < 1": (
        _patched(searched(), search={"num_samples": 0}),
        "search.num_samples must be greater than or equal to 1; got 0",
    ),
    "a range with a grid": (
        _patched(searched(), search={"algorithm": "grid", "num_samples": None}),
        "grid.C is a range {loguniform: [0.01, 100]}, which needs search.algorithm random or optuna",
    ),
    "random without num_samples": (
        _patched(searched(), search={"num_samples": None}),
        "search.num_samples must be set (at least 1) for algorithm random; got none",
    ),
    "unknown range kind": (
        _patched(searched(), grid={"C": {"normal": [0, 1]}}),
        "grid.C must be a list of values or a range {loguniform | uniform | randint: [low, high]}",
    ),
    "bad mode": (
        _patched(
            searched(),
            search={"algorithm": "optuna", "objectives": [{"metric": "asr", "mode": "lowest"}]},
        ),
        "search.objectives.0.mode must be one of 'min' or 'max'; got 'lowest'",
    ),
    "probe off the grid": (
        _patched(base(), search={"strategy": "slope_screen", "probe": {"poison_rate": 0.3}}),
        "search.probe.poison_rate must be one of the grid's values [0, 0.05, 0.1, 0.2]; got 0.3",
    ),
    "probe without poison": (
        _patched(base(), search={"strategy": "slope_screen", "probe": {"poison_rate": 0}}),
        "search.probe must be an attacked setting (poison_rate > 0); got poison_rate 0",
    ),
    "screen with optuna": (
        _patched(
            searched(),
            search={
                "algorithm": "optuna",
                "strategy": "slope_screen",
                "objectives": [{"metric": "asr", "mode": "min"}],
            },
        ),
        "search.strategy slope_screen needs algorithm grid or random",
    ),
    "more samples than configurations": (
        _patched(base(), search={"algorithm": "random", "num_samples": 21}),
        "search.num_samples must be at most 20, the number of distinct configurations",
    ),
    "screen settings without a screen": (
        _patched(base(), search={"keep": 2}),
        "search.keep is read by strategy slope_screen only; got 2 with strategy full",
    ),
}


def _run_cli(argv: list[str], capsys) -> tuple[int, str]:
    from backdoor_sweep.cli import main

    old_argv, old_term = sys.argv, signal.getsignal(signal.SIGTERM)
    sys.argv = ["backdoor-sweep", *argv]
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        sys.argv = old_argv
        signal.signal(signal.SIGTERM, old_term)
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_search_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    raw, needle = BAD[case]
    raw = {**raw, "store": str(tmp_path / "store")}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    code, err = _run_cli(["run", str(path)], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], lines[0]
    assert not (tmp_path / "store").exists()


# -- ranges and the search section -----------------------------------------------------------
def test_ranges_round_trip_and_yaml_exponents_without_a_dot():
    raw = searched()
    raw["grid"]["gamma"] = {"loguniform": ["1e-3", 1]}  # PyYAML reads 1e-3 as a string
    raw["grid"]["C"] = {"uniform": [0.5, 2]}
    spec = parse_spec(raw)
    assert spec.grid["gamma"] == Range(kind="loguniform", low=1e-3, high=1.0)
    dumped = spec.model_dump(mode="json")
    assert dumped["grid"]["gamma"] == {"loguniform": [1e-3, 1.0]}
    assert parse_spec(dumped).digest() == spec.digest()
    assert list(spec.cells())[0]["C"] == 0.5  # validation checks the endpoints


def test_a_default_search_section_leaves_the_digest_and_the_plan_alone():
    plain = parse_spec(base())
    raw = base()
    raw["search"] = {"algorithm": "grid", "strategy": "full"}
    assert parse_spec(raw).digest() == plain.digest()
    plans = plan_trials(plain)
    assert plans == plan_configurations(plain, grid_configurations(plain))
    assert not any("sampler" in r or "stage" in r for p in plans for r in p.results)


def test_random_search_is_a_fixed_plan_of_distinct_sampled_configurations():
    spec = parse_spec(searched(seed=7))
    plans = plan_trials(spec)
    again = plan_trials(spec)
    assert [p.trial_id for p in plans] == [p.trial_id for p in again]
    assert len(plans) == 5 and len({p.trial_id for p in plans}) == 5
    assert all(len(p.results) == 36 for p in plans)  # every attack setting x seed
    for p in plans:
        assert 1e-2 <= p.outer["C"] <= 1e2 and p.outer["gamma"] in (0.001, 0.01, 0.1, 1.0)
        assert {r["sampler"] for r in p.results} == {"random"}
    other = plan_trials(parse_spec(searched(seed=8)))
    assert {p.trial_id for p in other} != {p.trial_id for p in plans}
    assert spec.n_results == 5 * 36


def test_random_search_over_lists_only_draws_every_configuration_once():
    raw = base()
    raw["grid"]["C"] = [0.1, 1]
    raw["grid"]["gamma"] = [0.01, 0.1, 1]
    raw["search"] = {"algorithm": "random", "num_samples": 6}
    spec = parse_spec(raw)
    configs = sample_configurations(spec)
    assert len({configuration_key(spec, c) for c in configs}) == 6


def test_randint_draws_integers_below_high():
    raw = base()
    raw["learner"] = {"name": "cnn"}
    raw["grid"] = {"epochs": {"randint": [1, 3]}, "poison_rate": [0.1]}
    raw["curves"] = {"enabled": False}
    raw["search"] = {"algorithm": "random", "num_samples": 2}
    spec = parse_spec(raw)
    assert sorted(c["epochs"] for c in sample_configurations(spec)) == [1, 2]


def test_presets_sizes_and_smoke():
    optuna = load_spec(PRESETS_DIR / "digits_svm_rbf_optuna.yaml")
    assert optuna.search.sampler == "optuna_nsga2" and optuna.n_results == 12 * 36
    assert optuna.smoke().search.num_samples == 2
    screen_spec = load_spec(PRESETS_DIR / "digits_svm_rbf_slope_screen.yaml")
    assert screen_spec.n_results == 20 * 3 + 3 * 36
    smoke = screen_spec.smoke()
    assert smoke.n_results == 4 + 3 * 4 and probe_setting(smoke) == {
        "poison_rate": 0.05,
        "trigger_size": 2,
    }


# -- slope screening -------------------------------------------------------------------------
def test_probe_is_the_strongest_attack_unless_the_spec_names_one():
    raw = base()
    raw["search"] = {"strategy": "slope_screen"}
    assert probe_setting(parse_spec(raw)) == {"poison_rate": 0.2, "trigger_size": 3}
    raw["search"]["probe"] = {"trigger_size": 1}
    assert probe_setting(parse_spec(raw)) == {"poison_rate": 0.2, "trigger_size": 1}


@pytest.mark.parametrize("curves", [{"enabled": False}, {"enabled": True}])
def test_screen_plans_probe_every_configuration_with_its_beta_zero_fit_alone(curves):
    raw = base()
    raw["curves"] = curves
    raw["search"] = {"strategy": "slope_screen"}
    spec = parse_spec(raw)
    plans = screen_plans(spec)
    assert len(plans) == 20 and all(len(p.results) == 3 for p in plans)
    r = plans[0].results[0]
    assert (r["poison_rate"], r["trigger_size"], r["stage"]) == (0.2, 3, "screen")
    # one training per result whatever the spec's curves: beta = 0, no cross-check
    assert r["curves"] == {"enabled": True, "betas": [0.0], "cross_check": False, "probe": True}
    full = plan_trials(parse_spec(base()))
    assert not {p.trial_id for p in plans} & {p.trial_id for p in full}


def _screen_rows(plans, values: dict[tuple, tuple[float, float]]) -> pd.DataFrame:
    rows = []
    for p in plans:
        clean, slope = values[(p.outer["C"], p.outer["gamma"])]
        for k, r in enumerate(p.results):
            # seeds differ a little around the configuration's value
            rows.append(
                {**r, "trial_id": p.trial_id, "status": "ok", "clean_acc": clean + 0.001 * k}
                | {"slope": slope + 0.01 * k}
            )
    return pd.DataFrame(rows)


def test_screen_keeps_the_lowest_slopes_among_the_accurate():
    raw = base()
    raw["grid"].update(C=[1, 10], gamma=[0.01, 0.1])
    raw["search"] = {"strategy": "slope_screen", "keep": 2, "clean_tolerance": 0.02}
    spec = parse_spec(raw)
    plans = screen_plans(spec)
    values = {
        (1.0, 0.01): (0.99, 0.50),
        (1.0, 0.1): (0.95, 0.01),  # the lowest slope, but not accurate
        (10.0, 0.01): (0.985, 0.30),
        (10.0, 0.1): (1.0, 0.40),
    }
    result = screen(spec, plans, _screen_rows(plans, values))
    assert result.n_eligible == 3
    assert result.kept == [{"C": 10.0, "gamma": 0.01}, {"C": 10.0, "gamma": 0.1}]
    by = {(r["C"], r["gamma"]): r for r in result.table}
    assert not by[(1.0, 0.1)]["eligible"] and by[(1.0, 0.01)]["eligible"]
    assert by[(10.0, 0.01)]["slope"] == pytest.approx(0.31)  # seed mean
    assert n_keep(spec.search.model_copy(update={"keep": None, "keep_fraction": 0.5}), 3) == 2


# -- objectives: the trial's aggregation is the robust choice's ------------------------------
def test_objective_tracker_aggregates_like_the_robust_choice():
    spec = parse_spec(searched())
    plan = plan_trials(spec)[0]
    rng = np.random.default_rng(0)
    batch = []
    for r in plan.results:
        attacked = r["poison_rate"] > 0
        row = {
            "clean_acc": float(rng.uniform(0.9, 1.0)),
            "asr": float(rng.uniform(0, 1)) if attacked else 0.0,
            "n_poison": int(100 * r["poison_rate"]),
        }
        batch.append({"result_id": r["result_id"], "row": row})
    names = ["clean_acc", "asr", "worst_asr"]
    tracker = ObjectiveTracker(names, plan.results, spec.inner_axes())
    tracker(batch[:5])
    got = tracker(batch[5:])
    df = pd.DataFrame(
        [{**r, **b["row"], "status": "ok"} for r, b in zip(plan.results, batch, strict=False)]
    )
    for name in names:
        want = configuration_metric(df, ["C"], name)["mean"].iloc[0]
        assert got[name] == pytest.approx(want), name
    assert math.isnan(ObjectiveTracker(["slope"], plan.results, [])(batch[:1])["slope"])


# -- the Optuna searcher, without a Tune run -------------------------------------------------
def _optuna_spec(tmp_path, C=(0.1, 1), **search) -> object:
    raw = base()
    raw["grid"].update(C=list(C), gamma=[0.01])
    raw["store"] = str(tmp_path)
    objectives = [{"metric": "clean_acc", "mode": "max"}, {"metric": "worst_asr", "mode": "min"}]
    raw["search"] = {"algorithm": "optuna", "num_samples": 2, "objectives": objectives, **search}
    return parse_spec(raw)


def test_searcher_never_runs_a_configuration_twice_and_says_when_the_space_is_spent(tmp_path):
    from ray.tune.search import Searcher

    from sweep.searcher import make_searcher

    spec = _optuna_spec(tmp_path)
    searcher = make_searcher(spec)
    first = searcher.suggest("t1")
    second = searcher.suggest("t2")
    assert {first["C"], second["C"]} == {0.1, 1}
    searcher.on_trial_complete("t1", {"clean_acc": 0.99, "worst_asr": 0.2})
    assert searcher.suggest("t3") == Searcher.FINISHED and searcher.exhausted


def test_searcher_state_restores_and_catches_up_with_the_store(tmp_path):
    from sweep.searcher import make_searcher, restore_state, save_state

    spec = _optuna_spec(tmp_path, C=(0.1, 1, 10), num_samples=3)
    searcher = make_searcher(spec)
    a = searcher.suggest("t1")
    searcher.suggest("t2")  # still running when the driver "stops"
    searcher.on_trial_complete("t1", {"clean_acc": 0.99, "worst_asr": 0.2})
    save_state(searcher, tmp_path)
    assert not list(tmp_path.glob(".tmp-*"))

    fresh = make_searcher(spec)
    assert restore_state(fresh, tmp_path)
    stored_b = {"C": 10.0 if a["C"] != 10 else 1.0, "gamma": 0.01}
    key_a = configuration_key(spec, a)
    key_b = configuration_key(spec, stored_b)
    fresh.catch_up({key_a: (a, {}), key_b: (stored_b, {"clean_acc": 0.9, "worst_asr": 0.5})})
    states = [t.state.name for t in fresh._ot_study.trials]
    assert states.count("COMPLETE") == 2 and states.count("FAIL") == 1  # t2 was running
    assert fresh._taken == {key_a, key_b}
    assert not restore_state(make_searcher(spec), tmp_path / "elsewhere")


def test_a_corrupt_searcher_state_is_one_line(tmp_path):
    from sweep.searcher import STATE_FILE, make_searcher, restore_state

    (tmp_path / STATE_FILE).write_bytes(b"not a pickle")
    with pytest.raises(SweepError, match="searcher.pkl is corrupt"):
        restore_state(make_searcher(_optuna_spec(tmp_path)), tmp_path)


def test_outer_axes_of_a_search_are_the_learner_axes():
    spec = parse_spec(searched())
    assert outer_axes(spec) == ["C", "gamma"] and spec.inner_axes() == [
        "poison_rate",
        "trigger_size",
    ]
