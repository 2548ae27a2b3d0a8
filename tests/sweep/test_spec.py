"""Spec validation: each bad input gives one SweepError line naming the field and the value."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from backdoor_sweep.errors import SweepError
from sweep.plan import plan_trials
from sweep.spec import DEFAULT_SPEC, load_spec, parse_spec


def base() -> dict:
    return yaml.safe_load(DEFAULT_SPEC.read_text())


def test_default_spec_is_the_issue_grid():
    spec = load_spec()
    assert spec.name == "digits_svm_rbf"
    assert spec.grid["C"] == [0.01, 0.1, 1, 10, 100]
    assert spec.grid["gamma"] == [0.001, 0.01, 0.1, 1]
    assert spec.grid["poison_rate"] == [0, 0.05, 0.1, 0.2]
    assert spec.grid["trigger_size"] == [1, 2, 3]
    assert spec.seeds == [0, 1, 2]
    assert spec.n_results == 720


def test_plan_groups_attack_axes_and_seeds_inside_trials():
    spec = load_spec()
    plans = plan_trials(spec)
    assert len(plans) == 20  # one trial per (C, gamma)
    assert all(len(p.results) == 36 for p in plans)
    ids = [u["result_id"] for p in plans for u in p.results]
    assert len(set(ids)) == 720
    # stable: planning again gives the same ids (what makes resume exact)
    assert [p.trial_id for p in plan_trials(spec)] == [p.trial_id for p in plans]
    # YAML's integer 1 becomes the float the learner validated
    assert {type(u["C"]) for p in plans for u in p.results} == {float}


def test_smoke_keeps_first_two_values_and_first_seed():
    smoke = load_spec().smoke()
    assert smoke.n_results == 16
    assert smoke.grid["C"] == [0.01, 0.1]
    assert smoke.seeds == [0]


@pytest.mark.parametrize(
    "patch, expected",
    [
        ({"learner": {"name": "svm_cubic"}}, "learner.name must be one of"),
        (
            {"attack": {"trigger": "laser", "poisoning": "dirty_label", "target": 1}},
            "attack.trigger must be one of",
        ),
        ({"grid": {"C": [1, -1]}}, "grid.C must be greater than 0; got -1"),
        ({"grid": {"gamma": [0]}}, "grid.gamma must be greater than 0; got 0"),
        ({"grid": {"poison_rate": [0.1, 1.5]}}, "grid.poison_rate must be less than 1; got 1.5"),
        (
            {"grid": {"poison_rate": [-0.1]}},
            "grid.poison_rate must be greater than or equal to 0; got -0.1",
        ),
        ({"grid": {"trigger_size": [3, 9]}}, "trigger_size must be at most the image side"),
        ({"grid": {"bogus": [1]}}, "grid axis must be one of"),
        ({"grid": {"C": []}}, "grid.C must list at least one value"),
        (
            {"dataset": {"name": "digits", "classes": [7, 11]}},
            "dataset.classes must be classes of the dataset",
        ),
        (
            {"attack": {"trigger": "patch", "poisoning": "dirty_label", "target": 3}},
            "attack.target must be one of the classes [7, 1]; got 3",
        ),
        ({"seeds": []}, "seeds must list at least one seed"),
        ({"learner": {"name": "svm_rbf", "gama": 1}}, "learner.gama is not a known parameter"),
        ({"dataset": {"name": "imagenet"}}, "dataset.name must be one of"),
    ],
)
def test_bad_specs_give_one_line(patch, expected):
    raw = base()
    for key, value in patch.items():
        if key == "grid":
            raw["grid"].update(value)
        else:
            raw[key] = value
    with pytest.raises(SweepError) as err:
        parse_spec(raw)
    msg = str(err.value)
    assert expected in msg, msg
    assert "\n" not in msg


def test_gamma_for_a_linear_svm_is_refused():
    raw = base()
    raw["learner"] = {"name": "svm_linear"}
    with pytest.raises(SweepError, match="grid.gamma is not read by the chosen"):
        parse_spec(raw)


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: x
        grid:
          C: [1, 2
        """)
    )
    with pytest.raises(SweepError, match=r"not valid YAML at line"):
        load_spec(path)


def test_missing_spec_file(tmp_path):
    with pytest.raises(SweepError, match="spec file must be an existing YAML file"):
        load_spec(tmp_path / "nope.yaml")


def test_learner_can_be_a_grid_axis():
    raw = base()
    raw["learner"] = {"name": "svm_rbf"}
    raw["grid"] = {"learner": ["svm_rbf", "logistic"], "C": [1.0], "poison_rate": [0.1]}
    raw["seeds"] = [0]
    spec = parse_spec(raw)
    assert spec.n_results == 2
