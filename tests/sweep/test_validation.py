"""Spec validation by component: per-value checks, per-combination cell checks, no per-cell walk.

Expected counts and ids are computed here from the spec by hand, not through the planning code.
"""

from __future__ import annotations

import pytest

from backdoor_sweep.errors import SweepError
from sweep.plan import plan_trials
from sweep.spec import MAX_RESULTS, Spec, check_result_count, parse_spec
from trainables.attacks.triggers import PatchTrigger


def spec_dict(*, grid=None, seeds=None, learner=None, dataset=None, **attack) -> dict:
    raw = {
        "name": "t",
        "dataset": dataset or {"name": "digits", "classes": [7, 1, 3]},
        "learner": learner or {"name": "svm_rbf"},
        "attack": {"trigger": "patch", "poisoning": "dirty_label", "target": 1, **attack},
        "grid": grid or {},
    }
    if seeds is not None:
        raw["seeds"] = seeds
    return raw


def refused(raw: dict) -> str:
    with pytest.raises(SweepError) as err:
        parse_spec(raw)
    msg = str(err.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


# -- repeated values -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            spec_dict(grid={"C": [1, 1.0]}),
            "grid.C must not repeat a value; got 1 and 1.0 (both 1.0 once validated)",
        ),
        (spec_dict(grid={"C": [0.5, 2, 0.5]}), "grid.C must not repeat a value; got 0.5 and 0.5"),
        (
            spec_dict(grid={"trigger_size": [2, 2.0]}),
            "grid.trigger_size must not repeat a value; got 2 and 2.0 (both 2 once validated)",
        ),
        (
            spec_dict(grid={"learner": ["svm_rbf", "logistic", "svm_rbf"]}),
            "grid.learner must not repeat a value; got 'svm_rbf' and 'svm_rbf'",
        ),
        (
            spec_dict(grid={"target": [1, "1"]}),
            "grid.target must not repeat a value; got 1 and '1' (both 1 once validated)",
        ),
        (
            spec_dict(poisoning="supplant", grid={"source": [7, "7"]}),
            "grid.source must not repeat a value; got 7 and '7' (both '7' once validated)",
        ),
    ],
)
def test_values_equal_once_validated_are_refused_like_repeated_seeds(raw, message):
    assert refused(raw) == message


def test_distinct_values_give_one_result_each():
    spec = parse_spec(spec_dict(grid={"C": [1, 10], "poison_rate": [0.0, 0.1]}, seeds=[0, 5]))
    results = [r for p in plan_trials(spec) for r in p.results]
    expected = {(c, p, s) for c in (1.0, 10.0) for p in (0.0, 0.1) for s in (0, 5)}
    assert {(r["C"], r["poison_rate"], r["seed"]) for r in results} == expected
    assert len({r["result_id"] for r in results}) == len(results) == 8


# -- seeds -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (spec_dict(seeds=[0, -1]), "seeds.1 must be greater than or equal to 0; got -1"),
        (
            spec_dict(seeds=[2**32]),
            "seeds.0 must be less than or equal to 4294967295; got 4294967296",
        ),
        (spec_dict(seeds=[1, 1]), "seeds must not repeat; got [1, 1]"),
        (
            spec_dict(dataset={"name": "digits", "classes": [7, 1], "split_seed": -1}),
            "dataset.split_seed must be greater than or equal to 0; got -1",
        ),
    ],
)
def test_seeds_must_be_what_numpy_and_sklearn_accept(raw, message):
    assert refused(raw) == message


# -- components: each value, then each combination of the keys a check reads ------------------
def test_trigger_check_sees_every_trigger_and_size_combination():
    grid = {"trigger": ["patch", "four_corner"], "trigger_size": [3, 4]}
    assert parse_spec(spec_dict(grid=grid)).n_cells == 4  # 8×8: four corners of 4 fit
    grid["trigger_size"] = [3, 5]
    assert refused(spec_dict(grid=grid)).startswith(
        "grid.trigger_size must be at most 1/2 of the image side, 4"
    )


def test_supplant_source_is_checked_against_every_target():
    raw = spec_dict(poisoning="supplant", source=3, grid={"target": [1, 7]})
    parse_spec(raw)
    raw["grid"]["target"] = [1, 3]
    assert refused(raw) == "attack.source must differ from the target class 3; got '3'"
    raw = spec_dict(poisoning="supplant", grid={"source": ["all", 7, 5]})
    assert refused(raw) == "grid.source must be 'all' or one of the classes [7, 1, 3]; got '5'"


def test_defence_check_sees_the_learner_axis():
    raw = spec_dict(learner={"name": "cnn"}, grid={"learner": ["cnn", "svm_rbf"]})
    raw["defence"] = {"name": "dp_sgd"}
    assert refused(raw).startswith("grid.learner must be a network learner")


@pytest.fixture
def pattern_files(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (5, 7), (200, 10, 10)).save(good)
    text = tmp_path / "notes.png"
    text.write_text("this is not an image\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    return good, text, empty


def test_pattern_image_must_open_as_an_image(pattern_files):
    good, text, empty = pattern_files
    base = {"trigger": "blend", "pattern": "image"}
    parse_spec(spec_dict(**base, pattern_image=str(good)))
    for bad in (text, empty):
        msg = refused(spec_dict(**base, pattern_image=str(bad)))
        assert msg.startswith(
            f"attack.pattern_image must be an image file Pillow can read; got '{bad}'"
        )
    msg = refused(spec_dict(**base, pattern_image=str(good.parent)))
    assert (
        msg
        == f"attack.pattern_image must be an existing image file; got '{good.parent}' (a folder)"
    )
    msg = refused(
        spec_dict(trigger="blend", pattern="image", grid={"pattern_image": [str(good), str(text)]})
    )
    assert msg.startswith("grid.pattern_image must be an image file Pillow can read")


def test_low_variance_pattern_image_is_checked_too(pattern_files):
    _, text, _ = pattern_files
    raw = spec_dict(trigger="low_variance", pattern="image", pattern_image=str(text))
    assert "pattern_image must be an image file" in refused(raw)


# -- size ------------------------------------------------------------------------------------
def billion() -> dict:
    """10⁹ results: 10 values on each of four axes, 5 trigger sizes, 4 corners, 5000 seeds."""
    grid = {
        "C": [10.0**k for k in range(-5, 5)],
        "gamma": [10.0**k for k in range(-5, 5)],
        "tol": [10.0**k for k in range(-10, 0)],
        "poison_rate": [k / 20 for k in range(10)],
        "trigger_size": [1, 2, 3, 4, 5],
        "corner": ["bottom_right", "bottom_left", "top_right", "top_left"],
    }
    return spec_dict(grid=grid, seeds=list(range(5000)))


def test_a_billion_results_validate_without_walking_the_grid(monkeypatch):
    calls = []
    original = PatchTrigger.check_cell.__func__

    def counting(cls, cell, origins, info):
        calls.append(cell["trigger_size"])
        return original(cls, cell, origins, info)

    def no_walk(self):
        raise AssertionError("validation must not walk every cell")

    monkeypatch.setattr(Spec, "cells", no_walk)
    monkeypatch.setattr(PatchTrigger, "check_cell", classmethod(counting))
    spec = parse_spec(billion())
    assert spec.n_results == 10**9
    assert sorted(calls) == [1, 2, 3, 4, 5]  # once per trigger_size, not once per cell
    with pytest.raises(SweepError) as err:
        check_result_count(spec)
    msg = str(err.value)
    assert msg == (
        f"grid and seeds must give at most {MAX_RESULTS:,} results (pass --force to run more); "
        "got 1,000,000,000 = 10 C × 10 gamma × 10 tol × 10 poison_rate × 5 trigger_size × "
        "4 corner × 5000 seeds"
    )
    check_result_count(spec, force=True)


def test_the_limit_is_inclusive():
    spec = parse_spec(
        spec_dict(grid={"C": [float(c) for c in range(1, 101)]}, seeds=list(range(1000)))
    )
    assert spec.n_results == MAX_RESULTS
    check_result_count(spec)


# -- messages --------------------------------------------------------------------------------
def test_long_values_are_cut_in_messages():
    msg = refused(spec_dict(grid={"C": [-1.0] * 5, "poison_rate": [0.5] + [2.0] * 10**5}))
    assert msg == "grid.C must be greater than 0; got -1.0"
    msg = refused(spec_dict(learner={"name": "svm_rbf", "kernel": "x" * 10**5}))
    assert msg.startswith("learner.kernel is not a known parameter")
    msg = refused(spec_dict(target="x" * 10**5))
    assert msg.endswith("…") and len(msg) < 200
    msg = refused(spec_dict(learner={"name": "ridge"}, grid={"gamma": list(range(1, 10**5))}))
    assert msg.startswith(
        "grid.gamma is not read by the chosen learner ridge, which reads C; got [1, 2,"
    )
    assert len(msg) < 200
