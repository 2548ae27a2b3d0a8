"""Numbers are numbers: which fields refuse booleans and text, and NumPy numbers still pass.

The refusals themselves (one line, exit 2, nothing written) are cases of
`tests/sweep/test_bad_inputs.py`; here: which annotations count as numbers, and that the places
that parse stored values again — a spec built from NumPy values, a stored row's configuration
for `explain`, the plan of a searched row — accept ``np.float64`` and ``np.int64``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import pytest
import yaml
from pydantic import Field

from analysis.explain import find_result
from sweep.searching import plan_of_row
from sweep.spec import DEFAULT_SPEC, parse_spec
from tests.handmade import hand_spec, write_sweep
from trainables.attacks.poisoning import POISONINGS
from trainables.attacks.triggers import TRIGGERS
from trainables.components import number_kind
from trainables.learners import make_learner


@pytest.mark.parametrize(
    ("annotation", "kind"),
    [
        (int, "integer"),
        (float, "number"),
        (int | None, "integer"),
        (Annotated[float, Field(gt=0)] | None, "number"),
        (int | float, "number"),
        (int | tuple[int, int] | None, "integer"),
        (list[float], "number"),
        (bool, None),
        (str, None),
        (Any, None),
        (Literal[1, 2], None),
        (int | Literal["auto"], None),
        (list[str] | Literal["auto"], None),
        (float | str, None),
    ],
)
def test_number_kind_says_which_fields_take_numbers_only(annotation, kind):
    assert number_kind(annotation) == kind


def numpy_spec() -> dict:
    """The default spec with every number a NumPy number, as a notebook or the store gives them."""
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    raw["grid"] = {
        "C": list(np.array([0.1, 1.0])),  # np.float64
        "gamma": {"loguniform": [np.float64(1e-3), np.float64(1.0)]},
        "poison_rate": list(np.array([0.0, 0.1])),
        "trigger_size": list(np.arange(1, 3)),  # np.int64
    }
    raw["seeds"] = list(np.arange(2))
    raw["dataset"]["split_seed"] = np.int64(0)
    raw["search"] = {"algorithm": "random", "num_samples": np.int64(3), "seed": np.int64(4)}
    raw["execution"] = {"max_failures": np.int64(2), "cpus_per_trial": np.float64(1.0)}
    return raw


def test_numpy_numbers_are_numbers_in_a_spec():
    spec = parse_spec(numpy_spec())
    assert spec.seeds == [0, 1] and all(type(s) is int for s in spec.seeds)
    assert spec.search.num_samples == 3 and spec.execution.max_failures == 2
    assert spec.grid["gamma"].low == pytest.approx(1e-3)
    assert spec.n_results == 3 * 2 * 2 * 2


def test_a_stored_row_with_numpy_values_rebuilds_its_configuration(tmp_path):
    store = write_sweep(tmp_path / "store")
    df = store.read_table("trials", "hand")
    row = {c: df[c].iloc[0] for c in df.columns}  # numpy scalars, as each column gives them
    assert isinstance(row["C"], np.floating) and isinstance(row["trigger_size"], np.integer)
    assert isinstance(row["seed"], np.integer)
    config = find_result(hand_spec(), row)
    assert config["result_id"] == row["result_id"]
    # the components parse the stored values themselves (as a rebuilt trial does)
    learner = make_learner(row, random_state=int(row["seed"]))
    assert (learner.C, learner.gamma) == (row["C"], row["gamma"])
    trigger = TRIGGERS[row["trigger"]].from_config(row)
    assert trigger.params.trigger_size == row["trigger_size"]
    assert POISONINGS[row["poisoning"]].from_config(row).params.poison_rate == row["poison_rate"]


def test_a_searched_row_with_numpy_values_is_planned_again():
    raw = yaml.safe_load(DEFAULT_SPEC.read_text())
    raw["grid"]["C"] = {"loguniform": [1.0e-2, 1.0e2]}
    raw["search"] = {
        "algorithm": "optuna",
        "num_samples": 3,
        "objectives": [{"metric": "worst_asr", "mode": "min"}],
    }
    spec = parse_spec(raw)
    row = {"C": np.float64(2.5), "gamma": np.float64(0.01), "seed": np.int64(0)}
    (plan,) = plan_of_row(spec, row)
    assert plan.outer == {"C": 2.5, "gamma": 0.01} and type(plan.outer["C"]) is float
    assert len(plan.results) == 4 * 3 * len(spec.seeds)  # poison rates x trigger sizes x seeds
    assert {r["C"] for r in plan.results} == {2.5}
