"""Clean accuracy, backdoor accuracy, attack success rate and robust accuracy (docs/science.md §4).

All functions take label indices. ``y_true`` are the clean test labels, ``pred_clean`` the
predictions on the clean test set and ``pred_trig`` the predictions on the same samples with the
trigger applied.
"""

from __future__ import annotations

import numpy as np

ASR_DEFINITION = "exclude_target_label"


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def backdoor_accuracy(pred_trig: np.ndarray, target: int) -> float:
    """Accuracy on TS+BT: every triggered test sample labelled as the target."""
    pred_trig = np.asarray(pred_trig)
    return float(np.mean(pred_trig == target)) if len(pred_trig) else float("nan")


def attack_success_rate(
    y_true: np.ndarray,
    pred_trig: np.ndarray,
    target: int,
    pred_clean: np.ndarray | None = None,
) -> float:
    """Fraction of non-target test samples predicted as the target once triggered.

    With ``pred_clean`` given, samples already predicted as the target before triggering are also
    excluded (the variant of docs/science.md §4). NaN when no sample qualifies.
    """
    keep = np.asarray(y_true) != target
    if pred_clean is not None:
        keep &= np.asarray(pred_clean) != target
    if not keep.any():
        return float("nan")
    return float(np.mean(np.asarray(pred_trig)[keep] == target))


def robust_accuracy(y_true: np.ndarray, pred_trig: np.ndarray, target: int) -> float:
    """Fraction of triggered non-target test samples still predicted as their true label."""
    y_true = np.asarray(y_true)
    keep = y_true != target
    if not keep.any():
        return float("nan")
    return float(np.mean(np.asarray(pred_trig)[keep] == y_true[keep]))


def attack_metrics(y_true, pred_clean, pred_trig, target: int) -> dict[str, float]:
    """The metric columns every result stores."""
    return {
        "clean_acc": accuracy(y_true, pred_clean),
        "backdoor_acc": backdoor_accuracy(pred_trig, target),
        "asr": attack_success_rate(y_true, pred_trig, target),
        "asr_excl_pred": attack_success_rate(y_true, pred_trig, target, pred_clean),
        "robust_acc": robust_accuracy(y_true, pred_trig, target),
    }
