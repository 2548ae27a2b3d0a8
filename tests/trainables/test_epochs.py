"""Per-epoch reports of a network result: a clean held-out split, metrics after every epoch but
the last sent out, the last in the row — identical run to run on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.epochs import EPOCH_METRICS, split_validation
from trainables.trial import prepare_result, run_result, seed_sequence

CONFIG = {
    "learner": "cnn",
    "epochs": 3,
    "batch_size": 32,
    "lr": 0.05,
    "cnn_width": 4,
    "hidden_units": 16,
    "trigger": "patch",
    "trigger_size": 2,
    "pattern": "random",
    "corner": "bottom_right",
    "poisoning": "dirty_label",
    "poison_rate": 0.1,
    "target": 1,
    "defence": "none",
    "seed": 3,
    "deterministic": True,
    "precision": "fp32",
    "val_fraction": 0.2,
}


def test_split_validation_holds_out_a_seeded_part_of_the_training_split(digits_data):
    reduced, X_val, y_val = split_validation(digits_data, 0.2, seed_sequence(0, "validation"))
    n = len(digits_data.y_train)
    assert len(y_val) == round(0.2 * n) and len(reduced.y_train) == n - len(y_val)
    both = np.concatenate([reduced.X_train, X_val]).reshape(n, -1)
    assert len(np.unique(both, axis=0)) == len(
        np.unique(digits_data.X_train.reshape(n, -1), axis=0)
    )
    np.testing.assert_array_equal(reduced.X_test, digits_data.X_test)  # the test split stays


def test_epochs_are_reported_and_the_last_one_is_stored(digits_data):
    sent: list[dict] = []
    row = run_result({**CONFIG, "dynamics": True}, digits_data, sent.append).row
    assert [m["epoch"] for m in sent] == [1, 2]  # the last epoch travels with the result
    for m in sent:
        assert set(m) == {"epoch", *EPOCH_METRICS}
        assert m["train_loss"] > 0 and 0 <= m["val_clean_acc"] <= 1 and 0 <= m["val_asr"] <= 1
    assert row["epoch"] == 3 and set(EPOCH_METRICS) <= set(row)
    n = len(digits_data.y_train)
    assert row["n_val"] == round(0.2 * n) and row["n_train"] == n - row["n_val"]
    # the held-out samples are clean: the poisons are drawn from what is trained on
    assert row["n_poison"] == int(0.1 * row["n_train"])
    again: list[dict] = []
    row2 = run_result({**CONFIG, "dynamics": True}, digits_data, again.append).row
    assert row2.pop("fit_seconds") > 0 and row.pop("fit_seconds") > 0
    assert row2 == row and again == sent


def test_dynamics_and_reports_observe_the_same_epochs(digits_data):
    res = run_result({**CONFIG, "dynamics": True}, digits_data, lambda m: None)
    assert [r["epoch"] for r in res.dynamics] == [1, 2, 3]


def test_explain_rebuilds_the_training_split_the_result_used(digits_data):
    prepared = prepare_result(CONFIG, digits_data)
    assert len(prepared.data.y_train) + len(prepared.validation.y) == len(digits_data.y_train)
    assert len(prepared.poisoned.y) == len(prepared.data.y_train)
    plain = prepare_result({k: v for k, v in CONFIG.items() if k != "val_fraction"}, digits_data)
    assert plain.validation is None and plain.data is digits_data


@pytest.mark.parametrize("fraction", [1e-6, 0.999999])
def test_a_tiny_or_huge_fraction_keeps_one_sample_on_each_side(digits_data, fraction):
    reduced, _, y_val = split_validation(digits_data, fraction, np.random.default_rng(0))
    assert len(y_val) >= 1 and len(reduced.y_train) >= 1
