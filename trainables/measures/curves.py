"""Backdoor learning curves (docs/science.md §5) and parameter deviation (§7) for one result.

The learner is refitted with weight 1 on clean and β on poisoned samples over a β grid
(``fit_beta``; β = 0 trains on the clean samples only). Per β we record the mean loss and accuracy
on TS and on TS+BT, ρ(β) = ‖w(β)‖ and ν(β) = ½(1 − cos∠(w(0), w(β))) — in the RKHS for kernel SVMs,
with the signed dual coefficients. The slope θ comes from `trainables.measures.slope`: analytically for
the scikit-learn learners, and by a finite difference for every learner (for networks, from the
curve itself: its first positive β). Only ``fit_beta``, ``predict`` and the loss of
`trainables.measures.slope.sample_losses` are used, so any learner with those works.

The curve refits the learner alone, without the trial's defence: it describes how the learner's
hyperparameters let it absorb the poison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone

from trainables.measures.betas import DEFAULT_BETAS
from trainables.measures.kkt import margin_support_vectors
from trainables.measures.losses import losses_from_scores, scores, uses_proba
from trainables.measures.slope import Slope, analytic_slope, fd_plan, slope_fd

CURVE_COLUMNS = ("beta", "loss_clean", "loss_backdoor", "acc_clean", "acc_backdoor", "rho", "nu")


# -- parameter deviation ---------------------------------------------------------------------
@dataclass(frozen=True)
class Weights:
    """A fitted model's w without the intercept: a vector, or signed dual coefficients + SVs."""

    vector: np.ndarray | None = None
    coef: np.ndarray | None = None
    sv: np.ndarray | None = None
    kernel: Callable | None = None

    @classmethod
    def of(cls, learner) -> Weights | None:
        """Linear models through ``weight_vector()``; kernel SVMs through ``dual()``; else None."""
        w = learner.weight_vector() if hasattr(learner, "weight_vector") else None
        if w is not None:
            return cls(vector=np.asarray(w, dtype=np.float64))
        if (
            hasattr(learner, "dual")
            and hasattr(learner, "kernel_matrix")
            and len(learner.classes_) == 2
        ):
            _, coef, sv = learner.dual()
            return cls(coef=coef, sv=sv, kernel=learner.kernel_matrix)
        return None

    def inner(self, other: Weights) -> float:
        """⟨w, w'⟩ (in the RKHS for kernel models: aᵀK(SV, SV')a')."""
        if self.vector is not None:
            return float(self.vector @ other.vector)
        return float(self.coef @ self.kernel(self.sv, other.sv) @ other.coef)

    @property
    def norm(self) -> float:
        if self.vector is not None:
            return float(np.linalg.norm(self.vector))
        return float(np.sqrt(max(self.inner(self), 0.0)))


def rho(learner) -> float:
    """ρ = ‖w‖₂ without the intercept (sqrt(aᵀKa) for kernel SVMs); NaN if the model has no w."""
    w = Weights.of(learner)
    return w.norm if w is not None else float("nan")


def nu(w0: Weights | None, w: Weights | None, norm0: float, norm: float) -> float:
    """ν = ½(1 − cos∠(w(0), w(β))) ∈ [0, 1]; NaN if a norm is zero or there is no w."""
    if (
        w0 is None
        or w is None
        or (w0.vector is None) != (w.vector is None)
        or norm0 == 0
        or norm == 0
    ):
        return float("nan")
    cos = np.clip(w0.inner(w) / (norm0 * norm), -1.0, 1.0)
    return float(0.5 * (1.0 - cos))


# -- one curve -------------------------------------------------------------------------------
@dataclass
class Curve:
    """Per-β rows (``CURVE_COLUMNS``), the two slopes and the summary for the trials row."""

    rows: list[dict] = field(default_factory=list)
    slope: Slope = Slope(None, None)
    slope_fd: Slope = Slope(None, None)
    #: the β = 0 model (fitted at the finite difference's precision for scikit-learn learners)
    model0: object = None
    #: learner trainings the curve ran: β = 0, every positive β with poison, the cross-check's
    fits: int = 0

    def summary(self) -> dict:
        notes = [f"slope: {self.slope.note}"] if self.slope.note else []
        if self.slope_fd.note:
            notes.append(f"slope_fd: {self.slope_fd.note}")
        last = self.rows[-1] if self.rows else {}
        return {
            "slope": self.slope.value,
            "slope_fd": self.slope_fd.value,
            "slope_note": "; ".join(notes),
            "rho_final": last.get("rho", float("nan")),
            "nu_final": last.get("nu", float("nan")),
        }


def _predict(learner, X: np.ndarray, S: np.ndarray) -> np.ndarray:
    """``predict(X)``; for a binary model scored by its decision function, the rule predict
    itself applies (f > 0 → classes_[1], as in SVC, RidgeClassifier and LogisticRegression) on
    the scores ``S`` already computed for the loss — which halves the cost of a curve point."""
    classes = np.asarray(learner.classes_)
    if len(classes) == 2 and not uses_proba(learner) and S.ndim == 1:
        return classes[(S > 0).astype(int)]
    return np.asarray(learner.predict(X))


def _point(learner, beta, X_eval, y_eval, n_test, target, w0: Weights | None, norm0: float) -> dict:
    """Losses, accuracies, ρ and ν of one fitted model on TS (first n_test rows) and TS+BT."""
    S = scores(learner, X_eval)
    losses = losses_from_scores(learner, S, y_eval)
    pred = _predict(learner, X_eval, S)
    w = Weights.of(learner)
    norm = w.norm if w is not None else float("nan")
    return {
        "beta": float(beta),
        "loss_clean": float(np.mean(losses[:n_test])),
        "loss_backdoor": float(np.mean(losses[n_test:])),
        "acc_clean": float(np.mean(pred[:n_test] == y_eval[:n_test])),
        "acc_backdoor": float(np.mean(pred[n_test:] == target)),
        "rho": norm,
        "nu": nu(w0, w, norm0, norm),
    }


def learning_curve(
    make: Callable[[], object],
    X: np.ndarray,
    y: np.ndarray,
    is_poison: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    X_bt: np.ndarray,
    target: int,
    betas: Sequence[float] = DEFAULT_BETAS,
    cross_check: bool = True,
) -> Curve:
    """Refit over ``betas`` and compute both slopes at β = 0.

    ``make()`` returns a fresh unfitted learner; (X, y, is_poison) is the poisoned training set;
    TS = (X_test, y_test); TS+BT = X_bt, every label the ``target`` class index. β = 0 is always
    fitted (ν and the slopes need it) and the rows follow ``betas`` in increasing order.
    ``cross_check=False`` skips the finite-difference ``slope_fd`` of scikit-learn learners (one
    or two refits), leaving the analytic θ alone: with ``betas=(0,)`` the curve is then one fit.
    """
    betas = sorted({float(b) for b in betas})
    is_poison = np.asarray(is_poison, dtype=bool)
    y_bt = np.full(len(X_bt), target, dtype=np.asarray(y).dtype)
    X_eval = np.concatenate(
        [np.asarray(X_test, dtype=np.float64), np.asarray(X_bt, dtype=np.float64)]
    )
    y_eval = np.concatenate([np.asarray(y_test), y_bt])
    n_test = len(X_test)

    sklearn_learner = getattr(make(), "kind", "") == "sklearn"
    # the slopes differentiate the β = 0 fit: fit it at the finite difference's precision
    step, overrides = fd_plan(make()) if sklearn_learner else (0.0, {})
    learner0 = clone(make()).set_params(**overrides).fit_beta(X, y, is_poison, 0.0)
    base = _point(learner0, 0.0, X_eval, y_eval, n_test, target, None, float("nan"))
    w0 = Weights.of(learner0)
    base["nu"] = 0.0 if w0 is not None else float("nan")  # w(0) against itself
    curve = Curve(model0=learner0, fits=1)

    def trained(factory: Callable[[], object]) -> Callable[[], object]:
        """``factory`` whose every learner is fitted once: each counts in ``curve.fits``."""

        def made():
            curve.fits += 1
            return factory()

        return made

    refit = trained(make)
    for beta in betas:
        if beta == 0.0 or not is_poison.any():  # without poison every β fits the same model
            curve.rows.append({**base, "beta": beta})
            continue
        model = refit().fit_beta(X, y, is_poison, beta)
        curve.rows.append(_point(model, beta, X_eval, y_eval, n_test, target, w0, base["rho"]))

    if not sklearn_learner:
        curve.slope = Slope.undefined(
            f"no analytic slope for {getattr(learner0, 'kind', 'this')} learners; see slope_fd"
        )
        curve.slope_fd = _slope_from_curve([base, *curve.rows], is_poison)
        return curve
    curve.slope = analytic_slope(learner0, X, y, is_poison, X_bt, y_bt)
    if not cross_check:
        curve.slope_fd = Slope.undefined("not computed (cross-check off)")
        return curve
    curve.slope_fd = slope_fd(
        trained(lambda: clone(learner0)),
        X,
        y,
        is_poison,
        X_bt,
        y_bt,
        step=step,
        loss0=base["loss_backdoor"],
        one_sided=hasattr(learner0, "dual") and not margin_support_vectors(learner0).any(),
    )
    return curve


def _slope_from_curve(rows: list[dict], is_poison: np.ndarray) -> Slope:
    """(L_bt(β₁) − L_bt(0))/β₁ with β₁ the smallest positive β of the curve (networks)."""
    if not is_poison.any():
        return Slope.of(0.0, "no poisoned samples: the curve is flat")
    by_beta = {r["beta"]: r["loss_backdoor"] for r in rows}
    positive = [b for b in by_beta if b > 0]
    if 0.0 not in by_beta or not positive:
        return Slope.undefined("the curve needs β = 0 and a positive β for a finite difference")
    b1 = min(positive)
    return Slope.of(
        (by_beta[b1] - by_beta[0.0]) / b1, f"finite difference over the curve's first step β={b1:g}"
    )


def curve_for_result(config: dict, poisoned, data, X_bt: np.ndarray, target: int) -> Curve:
    """The trial's entry point: the curve of the configuration's ``curves`` settings (its
    ``summary()`` goes into the trials row, its rows into the curves table)."""
    from trainables.learners import make_learner

    spec = config.get("curves") or {}
    betas = spec.get("betas") if isinstance(spec, dict) else None
    seed = int(config["seed"])
    curve = learning_curve(
        lambda: make_learner(config, random_state=seed),
        poisoned.X,
        poisoned.y,
        poisoned.is_poison,
        data.X_test,
        data.y_test,
        X_bt,
        target,
        betas=betas or DEFAULT_BETAS,
        cross_check=bool(spec.get("cross_check", True)) if isinstance(spec, dict) else True,
    )
    return curve
