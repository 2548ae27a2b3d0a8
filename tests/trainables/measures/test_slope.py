"""The backdoor learning slope: analytic (implicit differentiation / dual KKT) against the finite
difference of the retrained curve, a hand-derived ridge case, and the undefined cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.svm import SVC

from trainables.learners import make_learner
from trainables.measures.curves import learning_curve
from trainables.measures.kkt import margin_support_vectors
from trainables.measures.losses import mean_loss
from trainables.measures.slope import Slope, analytic_slope, fd_plan, slope_fd, theta


def toy_problem(seed: int, n: int = 80, d: int = 6, n_poison: int = 10, n_test: int = 40):
    """Two Gaussian classes in d dims; poison = class-0 samples with a trigger on the last feature,
    relabelled as the target 1; TS+BT = fresh triggered test samples labelled 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    X = rng.normal(size=(n, d)) + 1.5 * (2 * y[:, None] - 1) * (np.arange(d) < 2)
    X[:, -1] = 0.1 * rng.normal(size=n)
    poison = rng.choice(np.flatnonzero(y == 0), size=n_poison, replace=False)
    X[poison, -1] += 2.0
    y = y.copy()
    y[poison] = 1
    is_poison = np.zeros(n, dtype=bool)
    is_poison[poison] = True
    y_test = rng.integers(0, 2, size=n_test)
    X_test = rng.normal(size=(n_test, d)) + 1.5 * (2 * y_test[:, None] - 1) * (np.arange(d) < 2)
    X_test[:, -1] = 0.1 * rng.normal(size=n_test)
    X_bt = X_test.copy()
    X_bt[:, -1] += 2.0
    return X, y, is_poison, X_test, y_test, X_bt, np.ones(n_test, dtype=int)


def both_slopes(config: dict, X, y, is_poison, X_bt, y_bt) -> tuple[Slope, Slope]:
    """The two routes exactly as the curves compute them."""
    proto = make_learner(config, random_state=0)
    step, overrides = fd_plan(proto)
    model0 = clone(proto).set_params(**overrides).fit_beta(X, y, is_poison, 0.0)
    one_sided = hasattr(model0, "dual") and not margin_support_vectors(model0).any()
    an = analytic_slope(model0, X, y, is_poison, X_bt, y_bt)
    fd = slope_fd(
        lambda: clone(model0),
        X,
        y,
        is_poison,
        X_bt,
        y_bt,
        step=step,
        loss0=mean_loss(model0, X_bt, y_bt),
        one_sided=one_sided,
    )
    return an, fd


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "config",
    [
        {"learner": "ridge", "C": 0.1},
        {"learner": "ridge", "C": 10.0},
        {"learner": "logistic", "C": 0.1},
        {"learner": "logistic", "C": 10.0},
    ],
    ids=["ridge-C0.1", "ridge-C10", "logistic-C0.1", "logistic-C10"],
)
def test_smooth_learners_analytic_matches_finite_difference(seed, config):
    X, y, is_poison, _, _, X_bt, y_bt = toy_problem(seed)
    an, fd = both_slopes(config, X, y, is_poison, X_bt, y_bt)
    assert an.value is not None and fd.value is not None, (an.note, fd.note)
    assert abs(an.value - fd.value) <= 0.01
    # a forward difference is off by ~h·L''/2; h = 1e-5 keeps that to ≲ 1% even where the curve
    # bends within β ~ 1e-3 (C = 10 here)
    assert an.dloss == pytest.approx(fd.dloss, rel=1e-2, abs=1e-6)
    assert an.dloss < 0  # more poison weight lowers the loss on TS+BT: the backdoor is being learnt


def test_ridge_finite_differences_converge_to_the_analytic_derivative():
    """Ridge is solved exactly, so the forward difference's error must shrink linearly with h
    (halving h halves it) towards the analytic derivative."""
    X, y, is_poison, _, _, X_bt, y_bt = toy_problem(0)
    config = {"learner": "ridge", "C": 10.0}
    model0 = make_learner(config).fit_beta(X, y, is_poison, 0.0)
    exact = analytic_slope(model0, X, y, is_poison, X_bt, y_bt).dloss
    l0 = mean_loss(model0, X_bt, y_bt)
    errors = []
    for h in (4e-5, 2e-5, 1e-5):
        fd = slope_fd(
            lambda: make_learner(config), X, y, is_poison, X_bt, y_bt, step=h, loss0=l0
        ).dloss
        errors.append(fd - exact)
    assert errors[1] / errors[0] == pytest.approx(0.5, abs=0.02)
    assert errors[2] / errors[1] == pytest.approx(0.5, abs=0.02)


# SVMs: the hinge path is piecewise linear, so a difference over [0, h] without a kink is exact up to
# the solver's precision; fd_plan refits at libsvm tol 1e-10 with C·h = 1e-5, whose error on L_bt is
# ~1e-10 against a change of ~1e-5·|dL/dβ|: 1e-3 on θ leaves a wide margin for that, and a kink
# inside [0, h] (which this tolerance would catch) would be a real disagreement to look into.
SVM_TOL = 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "config",
    [
        {"learner": "svm_linear", "C": 0.1},
        {"learner": "svm_linear", "C": 10.0},
        {"learner": "svm_rbf", "C": 1.0, "gamma": 0.1},
        {"learner": "svm_rbf", "C": 100.0, "gamma": 0.05},
    ],
    ids=["linear-C0.1", "linear-C10", "rbf-C1", "rbf-C100"],
)
def test_svms_analytic_matches_finite_difference(seed, config):
    X, y, is_poison, _, _, X_bt, y_bt = toy_problem(seed)
    an, fd = both_slopes(config, X, y, is_poison, X_bt, y_bt)
    assert an.value is not None and fd.value is not None, (an.note, fd.note)
    assert abs(an.value - fd.value) <= SVM_TOL
    assert an.dloss == pytest.approx(fd.dloss, rel=1e-2, abs=1e-5)


def test_svm_without_margin_vectors_gives_the_one_sided_slope():
    """Small C puts every support vector at its bound: libsvm's intercept is the midpoint of an
    interval and L_bt jumps at β = 0⁺; the analytic slope is then the one-sided one, and says so."""
    X, y, is_poison, _, _, X_bt, y_bt = toy_problem(3, n=60)
    config = {"learner": "svm_rbf", "C": 0.01, "gamma": 0.1}
    model0 = make_learner(config).set_params(tol=1e-10).fit_beta(X, y, is_poison, 0.0)
    assert not margin_support_vectors(model0).any()
    an, fd = both_slopes(config, X, y, is_poison, X_bt, y_bt)
    assert an.value is not None and "one-sided" in an.note
    assert "chord" in fd.note
    assert abs(an.value - fd.value) <= SVM_TOL


def test_ridge_slope_matches_the_hand_derived_closed_form():
    """Clean x = −1 (y = −1) and x = +1 (y = +1), one poisoned x_p = 3 labelled −1, TS+BT one point
    x_t = 2 labelled −1. RidgeClassifier minimises Σ(y − wx − b)² + α w², α = 1/(2C). By symmetry
    w0 = Σxy / (Σx² + α) = 2 / (2 + α) and b0 = 0. The Hessian is H = 2·diag(Σx² + α, n) = 2·diag(2 + α, 2),
    the poison gradient g = −2 r_p (x_p, 1) with r_p = y_p − w0 x_p, so (dw, db) = −H⁻¹g =
    r_p·(x_p / (2 + α), 1/2), and dL_bt/dβ = −2 r_t (x_t dw + db) with r_t = y_t − w0 x_t."""
    C = 1.0
    alpha = 1.0 / (2.0 * C)
    X = np.array([[-1.0], [1.0], [3.0]])
    y = np.array([0, 1, 0])
    is_poison = np.array([False, False, True])
    X_bt, y_bt = np.array([[2.0]]), np.array([0])
    w0 = 2.0 / (2.0 + alpha)
    r_p = -1.0 - w0 * 3.0
    r_t = -1.0 - w0 * 2.0
    dw, db = r_p * 3.0 / (2.0 + alpha), r_p / 2.0
    expected = -2.0 * r_t * (2.0 * dw + db)  # = -51.272 for C = 1

    model0 = make_learner({"learner": "ridge", "C": C}).fit_beta(X, y, is_poison, 0.0)
    assert model0.weight_vector()[0] == pytest.approx(w0)
    got = analytic_slope(model0, X, y, is_poison, X_bt, y_bt)
    assert got.dloss == pytest.approx(expected, rel=1e-10)
    assert got.value == pytest.approx(-(2 / np.pi) * np.arctan(expected))
    # and the closed form is the derivative of the exactly retrained model
    h = 1e-6
    l0 = mean_loss(model0, X_bt, y_bt)
    l1 = mean_loss(
        make_learner({"learner": "ridge", "C": C}).fit_beta(X, y, is_poison, h), X_bt, y_bt
    )
    assert (l1 - l0) / h == pytest.approx(expected, rel=1e-4)


def test_theta_range_and_sign():
    assert theta(0.0) == 0.0
    assert theta(-1e9) == pytest.approx(1.0)
    assert theta(1e9) == pytest.approx(-1.0)
    assert 0 < theta(-1.0) < 1


def test_kernel_svm_decision_function_equals_libsvm():
    """The numpy decision function the slopes and curves use is libsvm's, sign convention included."""
    X, y, is_poison, X_test, _, _, _ = toy_problem(4)
    for config in (
        {"learner": "svm_rbf", "C": 1.0, "gamma": 0.2},
        {"learner": "svm_linear", "C": 1.0},
    ):
        model = make_learner(config).fit_beta(X, y, is_poison, 0.3)
        ref = SVC.decision_function(model.model_, X_test)
        np.testing.assert_allclose(model.decision_function(X_test), ref, rtol=1e-9, atol=1e-11)
        np.testing.assert_array_equal(model.classes_[(ref > 0).astype(int)], model.predict(X_test))


def test_undefined_cases_are_null_with_a_reason():
    X, y, is_poison, X_test, y_test, X_bt, y_bt = toy_problem(5)
    # multiclass: no analytic form here
    y3 = y.copy()
    y3[:10] = 2
    model = make_learner({"learner": "logistic", "C": 1.0}).fit_beta(X, y3, is_poison, 0.0)
    s = analytic_slope(model, X, y3, is_poison, X_bt, y_bt)
    assert s.value is None and s.dloss is None and "binary" in s.note
    # a learner without an analytic form (e.g. a network) gets no number from this route
    s = analytic_slope(object(), X, y, is_poison, X_bt, y_bt)
    assert s.value is None and "slope_fd" in s.note


def test_no_poison_gives_a_flat_curve_and_zero_slope():
    X, y, is_poison, X_test, y_test, X_bt, _ = toy_problem(6)
    none = np.zeros_like(is_poison)
    curve = learning_curve(
        lambda: make_learner({"learner": "ridge", "C": 1.0}),
        X,
        y,
        none,
        X_test,
        y_test,
        X_bt,
        1,
        betas=[0, 0.1, 1],
    )
    assert curve.slope.value == 0.0 and curve.slope_fd.value == 0.0
    assert "no poisoned samples" in curve.summary()["slope_note"]
    assert len({r["loss_backdoor"] for r in curve.rows}) == 1
