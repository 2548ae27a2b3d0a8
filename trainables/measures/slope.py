"""The backdoor learning slope θ = −(2/π)·arctan(dL_bt/dβ at β = 0) (docs/science.md §6), two ways.

**Analytic** (``analytic_slope``): implicit differentiation of the optimality conditions of the
β = 0 model, i.e. the right derivative at β = 0⁺ of the path w*(β). With weight 1 on clean and β on
poisoned rows, scikit-learn minimises J₀(θ) + β·Σ_{p∈P} ℓ_p(θ), so dθ/dβ = −H⁻¹·Σ_p ∇ℓ_p(θ*(0)), with
H the Hessian of J₀ exactly as the estimator defines it (``trainables/learners/sklearn_learners.py``):

- ridge: J₀ = Σ_clean (yᵢ − f(xᵢ))² + α‖w‖², α = 1/(2C), intercept unpenalised;
- logistic: J₀ = ½‖w‖² + C·Σ_clean log(1 + e^{−yᵢ f(xᵢ)}), intercept unpenalised.

A positive rescaling of J₀ + β·Σℓ_p leaves its minimiser unchanged, so only the ratio of loss to
regulariser matters — which is why C (or α) must be the estimator's own.

**Hinge-loss SVMs** (``svm_linear``, ``svm_rbf``) are not differentiable; we differentiate the dual
KKT system instead. SVC solves min ½aᵀQa − 1ᵀa, 0 ≤ aᵢ ≤ C·sᵢ, yᵀa = 0 with Qᵢⱼ = yᵢyⱼK(xᵢ, xⱼ).
For small β > 0 the active sets of the β = 0 solution persist (the path is piecewise linear), so:
clean points at a bound (a = 0 or C) keep a fixed a; poisoned points inside the margin
(y_p f(x_p) < 1) sit at their bound a_p = C·β, so da_p/dβ = C; the others stay at 0; and the margin
support vectors S (0 < a < C) keep yᵢ f(xᵢ) = 1. Differentiating those equalities and yᵀa = 0:

    [Q_SS  y_S] [da_S]      [ C · y_S ⊙ (K_SP·y_P) ]
    [y_Sᵀ   0 ] [ db ]  = − [ C · Σ_P y_p          ]

and df(x)/dβ = Σ_S da_j y_j K(x_j, x) + C·Σ_P y_p K(x_p, x) + db — the kernel form, with K the
linear kernel for ``svm_linear`` and the RBF kernel for ``svm_rbf``. A singular but consistent
system still gives a unique df (a null direction v has vᵀQv = ‖Σ v_j y_j φ(x_j)‖² = 0), so it falls
back to least squares. With *no* margin support vector (common at small C) the β = 0 intercept is
any b in an interval and libsvm returns its midpoint, so L_bt jumps at β = 0⁺; the poison then
forces the clean point pinning one end of the interval off its bound, and we differentiate the
path for β → 0⁺ with that intercept and that single margin vector: a one-sided slope, said so in
the note (``_intercept_at_0plus``). Undefined cases give ``None`` and a reason: poison of both
labels or none reaching the margin in that case, an inconsistent KKT system, multiclass problems,
non-finite derivatives.

**Finite difference** (``slope_fd``): (L_bt(h) − L_bt(0))/h with the model retrained at a small h
(``fd_plan`` picks h and the solver precision). When the intercept of an SVM at β = 0 is not
unique, the difference is the chord between h and 2h instead (the one-sided limit).

Binary labels are mapped to ±1 with +1 = ``classes_[1]``, the sign of scikit-learn's decision
function. TS+BT labels are all the target, so ``y_bt`` is constant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trainables.learners.sklearn_learners import flatten
from trainables.measures.kkt import (
    BOUND_RTOL,
    kkt_response,
    loss_gradients,
    loss_weight,
    margin_support_vectors,
    objective_hessian,
    solve_spd,
)
from trainables.measures.losses import (
    mean_loss,
    signed,
)


def theta(dloss: float) -> float:
    """θ = −(2/π)·arctan(dL_bt/dβ) ∈ [−1, 1]; 1 = the backdoor is learnt fast."""
    return float(-(2.0 / np.pi) * np.arctan(dloss))


@dataclass(frozen=True)
class Slope:
    """θ (``value``), the raw derivative dL_bt/dβ (``dloss``) and why either is missing."""

    value: float | None
    dloss: float | None
    note: str = ""

    @classmethod
    def of(cls, dloss: float, note: str = "") -> Slope:
        if not np.isfinite(dloss):
            return cls(None, None, f"dL_bt/dβ is not finite ({dloss})")
        return cls(theta(dloss), float(dloss), note)

    @classmethod
    def undefined(cls, note: str) -> Slope:
        return cls(None, None, note)


# -- losses ----------------------------------------------------------------------------------


# -- analytic slopes -------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """The flattened clean/poisoned training split and TS+BT, labels as ±1."""

    Xc: np.ndarray
    yc: np.ndarray
    Xp: np.ndarray
    yp: np.ndarray
    X_bt: np.ndarray
    y_bt: np.ndarray


# -- the smooth objectives (ridge, logistic): also the influence functions' Hessian --------


def _smooth(learner, pb: Problem) -> Slope:
    """Ridge and logistic: dθ/dβ = −H⁻¹·c·Σ_p ∇ℓ_p, c = ``loss_weight``, H of the clean objective."""
    g_poison = loss_weight(learner) * loss_gradients(learner, pb.Xp, pb.yp).sum(axis=0)
    dw = solve_spd(objective_hessian(learner, pb.Xc), -g_poison)
    if dw is None:
        return Slope.undefined(f"{learner.name} Hessian at β=0 is singular to working precision")
    g_bt = loss_gradients(learner, pb.X_bt, pb.y_bt).mean(axis=0)
    return Slope.of(float(g_bt @ dw))


def _svm(learner, pb: Problem) -> Slope:
    C = float(learner.model_.C)
    support, coef, sv = learner.dual()
    b = float(np.ravel(learner.model_.intercept_)[0])
    free = margin_support_vectors(learner)
    Kd = learner.kernel_matrix(np.vstack([pb.Xp, pb.X_bt]), sv)
    g_p, g_bt = Kd[: len(pb.Xp)] @ coef, Kd[len(pb.Xp) :] @ coef  # f − b
    note = ""
    if free.any():
        S = support[free]  # margin support vectors, as clean-row indices
    else:
        b, S, note = _intercept_at_0plus(learner, pb, support, coef, sv, g_p, C)
        if S is None:
            return Slope.undefined(note)
    enter = pb.yp * (g_p + b) < 1.0  # poisoned rows that become bounded support vectors for β > 0
    if not enter.any():
        return Slope.of(0.0, "no poisoned sample violates the β=0 margin: the model does not move")
    active = pb.y_bt * (g_bt + b) < 1.0  # TS+BT samples with a non-zero hinge
    if not active.any():
        return Slope.of(0.0, "every TS+BT sample is beyond the margin: the hinge loss is flat")
    Xs, ys = pb.Xc[S], pb.yc[S]
    Xe, ye = pb.Xp[enter], pb.yp[enter]
    # every entering poison's dual variable grows at da_p/dβ = C: one forcing column
    df = kkt_response(learner, Xs, ys, Xe, ye, np.full((len(ye), 1), C), pb.X_bt[active])
    if df is None:
        return Slope.undefined(
            f"the KKT system on the {len(ys)} margin support vectors is inconsistent"
        )
    return Slope.of(float(np.sum(-pb.y_bt[active] * df[:, 0]) / len(pb.X_bt)), note)


def _intercept_at_0plus(learner, pb: Problem, support, coef, sv, g_p, C):
    """(b, S, note) of the path just after β = 0 when every support vector is at its bound.

    The β = 0 intercept is then any b in [b_lo, b_hi] (libsvm returns the midpoint). Poison of
    label s entering at a = C·β unbalances yᵀa = 0, so a clean point must leave its bound: the one
    that pins b_hi (s = +1) or b_lo (s = −1). The path for β → 0⁺ has that intercept and that single
    margin support vector — the one-sided limit the chord finite difference also measures.
    """
    signs = np.unique(pb.yp)
    if len(signs) != 1:
        return (
            float("nan"),
            None,
            "no margin support vectors at β=0 and poison of both labels: the one-sided path is not determined",
        )
    s = float(signs[0])
    a = np.zeros(len(pb.yc))
    a[support] = np.abs(coef)
    g = learner.kernel_matrix(pb.Xc, sv) @ coef
    at_c, at_0 = a >= (1.0 - BOUND_RTOL) * C, a <= BOUND_RTOL * C
    y = pb.yc
    # KKT: at C ⇒ y·f ≤ 1, at 0 ⇒ y·f ≥ 1; each row bounds b from one side
    upper = np.where((at_c & (y > 0)) | (at_0 & (y < 0)), y - g, np.inf)
    lower = np.where((at_c & (y < 0)) | (at_0 & (y > 0)), y - g, -np.inf)
    j = int(np.argmin(upper)) if s > 0 else int(np.argmax(lower))
    b = float(upper[j] if s > 0 else lower[j])
    if not np.isfinite(b):
        return float("nan"), None, "no margin support vectors at β=0 and the intercept is unbounded"
    if not np.any(pb.yp * (g_p + b) < 1.0):
        return (
            float("nan"),
            None,
            (
                "no margin support vectors at β=0 and no poisoned sample violates the margin at the end of "
                "the intercept interval: the one-sided path is not determined"
            ),
        )
    note = (
        "one-sided: every support vector is at its bound at β=0, so the intercept is not unique; "
        "this is the derivative of the path for β→0+, whose intercept sits at the end of that interval"
    )
    return b, np.array([j]), note


#: learner name -> analytic slope of its β = 0 model; adding one is one function and one line
ANALYTIC: dict[str, Callable] = {
    "ridge": _smooth,
    "logistic": _smooth,
    "svm_linear": _svm,
    "svm_rbf": _svm,
}


def analytic_slope(learner0, X, y, is_poison, X_bt, y_bt) -> Slope:
    """θ at β = 0 by implicit differentiation, for ``learner0`` fitted on the clean rows only.

    ``X, y, is_poison`` are the whole (poisoned) training set; ``X_bt, y_bt`` is TS+BT.
    """
    fn = ANALYTIC.get(getattr(learner0, "name", ""))
    if fn is None or getattr(learner0, "kind", "") != "sklearn":
        return Slope.undefined(
            f"no analytic slope for learner {getattr(learner0, 'name', type(learner0).__name__)!r}; "
            "see slope_fd"
        )
    classes = np.asarray(learner0.classes_)
    if len(classes) != 2:
        return Slope.undefined(
            f"the analytic slope is defined for binary problems; got {len(classes)} classes"
        )
    is_poison = np.asarray(is_poison, dtype=bool)
    X = flatten(X)
    y = np.asarray(y)
    pb = Problem(
        X[~is_poison],
        signed(classes, y[~is_poison]),
        X[is_poison],
        signed(classes, y[is_poison]),
        flatten(X_bt),
        signed(classes, np.asarray(y_bt)),
    )
    if not is_poison.any():
        return Slope.of(0.0, "no poisoned samples: the curve is flat")
    return fn(learner0, pb)


# -- finite differences ----------------------------------------------------------------------
#: solver tolerance for the finite-difference refits of hinge-loss SVMs (see ``fd_plan``)
FD_SVC_TOL = 1e-10


def fd_plan(learner) -> tuple[float, dict]:
    """(step h, parameter overrides for the refits) of the finite difference.

    Hinge paths are piecewise linear with kinks as early as C·β ≈ 1e-5 on digits, and libsvm's
    default precision (tol 1e-7, in margin units) swamps a difference that small; so for SVMs the
    β = 0 and β = h fits both run at tol 1e-10, with C·h = 1e-5 (h capped at 1e-4). Over 121 SVM
    slopes on the default problem this agreed with the analytic θ to 7e-5, against 0.07 at tol 1e-7.
    Ridge is solved exactly and logistic runs at tol 1e-8 already: h = 1e-5, no overrides.
    """
    if getattr(learner, "loss", "") == "hinge":
        return float(min(1e-4, 1e-5 / float(learner.C))), {"tol": FD_SVC_TOL}
    return 1e-5, {}


def slope_fd(
    make: Callable[[], object],
    X,
    y,
    is_poison,
    X_bt,
    y_bt,
    *,
    step: float,
    loss0: float | None = None,
    one_sided: bool = False,
) -> Slope:
    """θ from L_bt retrained at a small β: (L(h) − L(0))/h, or the chord (L(2h) − L(h))/h.

    ``make()`` returns a fresh unfitted learner with ``fit_beta``. ``loss0`` is L_bt(0) when the
    caller already has it from an identical fit (else β = 0 is refitted). ``one_sided`` takes the
    chord, for SVMs whose β = 0 intercept is not unique (libsvm's midpoint jumps at β = 0⁺).
    """
    if not np.any(is_poison):
        return Slope.of(0.0, "no poisoned samples: the curve is flat")

    def loss_at(beta: float) -> float:
        return mean_loss(make().fit_beta(X, y, is_poison, beta), X_bt, y_bt)

    if one_sided:
        l1, l2 = loss_at(step), loss_at(2 * step)
        return Slope.of((l2 - l1) / step, f"one-sided: chord between β={step:g} and {2 * step:g}")
    l0 = loss_at(0.0) if loss0 is None else loss0
    return Slope.of((loss_at(step) - l0) / step)
