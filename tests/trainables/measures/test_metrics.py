"""Metrics on small hand-computed cases (docs/science.md §4)."""

from __future__ import annotations

import math

import numpy as np

from trainables.measures.metrics import (
    accuracy,
    attack_metrics,
    attack_success_rate,
    backdoor_accuracy,
    robust_accuracy,
)

# target t = 1; six test samples, four of them not of the target class
Y = np.array([0, 0, 2, 2, 1, 1])
PRED_CLEAN = np.array([0, 1, 2, 0, 1, 1])
PRED_TRIG = np.array([1, 1, 2, 1, 1, 0])


def test_accuracy_counts_matches():
    assert accuracy(Y, PRED_CLEAN) == 4 / 6


def test_backdoor_accuracy_is_accuracy_against_the_target_on_every_sample():
    assert backdoor_accuracy(PRED_TRIG, target=1) == 4 / 6


def test_asr_counts_only_non_target_samples():
    # non-target samples: indices 0..3, triggered predictions 1, 1, 2, 1 -> 3 of 4
    assert attack_success_rate(Y, PRED_TRIG, target=1) == 3 / 4


def test_asr_variant_also_drops_samples_already_predicted_as_target():
    # index 1 is predicted 1 before triggering -> left: 0, 2, 3 -> triggered 1, 2, 1 -> 2 of 3
    assert attack_success_rate(Y, PRED_TRIG, target=1, pred_clean=PRED_CLEAN) == 2 / 3


def test_robust_accuracy_is_triggered_non_target_still_correct():
    # non-target: true 0, 0, 2, 2; triggered preds 1, 1, 2, 1 -> only index 2 -> 1 of 4
    assert robust_accuracy(Y, PRED_TRIG, target=1) == 1 / 4


def test_asr_is_nan_without_non_target_samples():
    assert math.isnan(attack_success_rate(np.array([1, 1]), np.array([1, 0]), target=1))


def test_attack_metrics_has_every_column():
    m = attack_metrics(Y, PRED_CLEAN, PRED_TRIG, target=1)
    assert set(m) == {"clean_acc", "backdoor_acc", "asr", "asr_excl_pred", "robust_acc"}
    assert m["asr"] + m["robust_acc"] <= 1.0
