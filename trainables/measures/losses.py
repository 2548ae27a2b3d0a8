"""Per-sample training losses of the learners, as their estimators define them.

Shared by the learning curves, the slope, the influence functions and the training dynamics
(see docs/science.md, "Backdoor learning curve").
"""

from __future__ import annotations

import numpy as np

__all__ = ["losses_from_scores", "mean_loss", "sample_losses", "scores", "signed", "uses_proba"]


def signed(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Binary labels as ±1, +1 for ``classes[1]`` (the positive side of the decision function)."""
    return np.where(np.asarray(y) == classes[1], 1.0, -1.0)


def class_positions(classes: np.ndarray, y: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(classes, y)
    if np.any(pos >= len(classes)) or np.any(classes[np.minimum(pos, len(classes) - 1)] != y):
        raise ValueError(f"labels {np.unique(y)} are not all among the model's classes {classes}")
    return pos


def uses_proba(learner) -> bool:
    """Whether the loss is read from ``predict_proba`` (cross-entropy) or ``decision_function``."""
    return learner.loss == "cross_entropy" or (
        learner.loss == "logistic" and len(learner.classes_) > 2
    )


def scores(learner, X: np.ndarray) -> np.ndarray:
    """What the loss is computed from: ``predict_proba`` or ``decision_function`` (see ``uses_proba``)."""
    if uses_proba(learner):
        return np.asarray(learner.predict_proba(X), dtype=np.float64)
    return np.asarray(learner.decision_function(X), dtype=np.float64)


def losses_from_scores(learner, S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample training loss of ``learner`` (its ``loss`` attribute) from its ``scores``.

    Binary: on the margin m = ±1·f(x): hinge max(0, 1 − m), logistic log(1 + e^{−m}), squared
    (1 − m)² = (y − f)². Multiclass: Crammer–Singer hinge, squared loss on one-vs-all ±1 targets,
    and cross-entropy of ``predict_proba`` for logistic and ``cross_entropy`` (networks).
    """
    classes = np.asarray(learner.classes_)
    y = np.asarray(y)
    kind = learner.loss
    if uses_proba(learner):
        p = S[np.arange(len(y)), class_positions(classes, y)]
        return -np.log(np.clip(p, 1e-300, None))
    if len(classes) == 2:
        m = signed(classes, y) * S.ravel()
        if kind == "hinge":
            return np.maximum(0.0, 1.0 - m)
        if kind == "logistic":
            return np.logaddexp(0.0, -m)
        if kind == "squared":
            return (1.0 - m) ** 2
    else:
        pos = class_positions(classes, y)
        rows = np.arange(len(y))
        if kind == "hinge":
            other = S.copy()
            other[rows, pos] = -np.inf
            return np.maximum(0.0, 1.0 + other.max(axis=1) - S[rows, pos])
        if kind == "squared":
            target = -np.ones_like(S)
            target[rows, pos] = 1.0
            return ((target - S) ** 2).sum(axis=1)
    raise ValueError(f"loss must be one of hinge, logistic, squared, cross_entropy; got {kind!r}")


def sample_losses(learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample training loss of ``learner`` on (X, y); see ``losses_from_scores``."""
    return losses_from_scores(learner, scores(learner, X), y)


def mean_loss(learner, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(sample_losses(learner, X, y))) if len(y) else float("nan")
