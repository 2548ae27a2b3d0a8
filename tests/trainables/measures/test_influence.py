"""Influence functions against refitting: leave-one-out, sample-weight finite differences, the slope.

Tolerances stated here, measured, not tuned:
- ridge: the ranked effect (one Newton step) *is* leave-one-out (Sherman–Morrison): 1e-9;
- logistic: one Newton step is second-order accurate; with leverages ≤ 0.15 on this problem the
  error is ≤ 12% of the largest leave-one-out change, and the top-5 set is the same;
- hinge SVMs: for a support vector at its bound the effect is the exact derivative of the refit
  with that row's weight lowered (1e-2 relative: libsvm's precision at tol 1e-10);
- networks: the last-layer formulas equal autograd's Hessian and gradients of the head objective.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from trainables.attacks.poisoning import make_poisoning
from trainables.attacks.triggers import make_trigger
from trainables.data.datasets import DatasetSpec, load_dataset
from trainables.learners import make_learner
from trainables.measures.gradients import gradient_map, input_gradient, trigger_share
from trainables.measures.influence import (
    influential_poison_frac,
    removal_effects,
    top_k,
    triggered_probe,
    upweight_effects,
)
from trainables.measures.kkt import dloss_dmargin, margin_support_vectors
from trainables.measures.losses import signed
from trainables.measures.slope import analytic_slope
from trainables.trial import seed_sequence


def small_problem(n=200, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (X @ rng.normal(size=d) + 0.8 * rng.normal(size=n) > 0).astype(int)
    X_test = rng.normal(size=(5, d))
    return X, y, X_test, rng.integers(0, 2, 5)


def leave_one_out(make, X, y, X_test, y_test) -> np.ndarray:
    """Margin changes of the test samples when each training row is removed and the model refitted."""
    model = make().fit(X, y)
    s = signed(model.classes_, y_test)
    m0 = s * model.decision_function(X_test)
    return np.array(
        [
            s * make().fit(np.delete(X, i, 0), np.delete(y, i)).decision_function(X_test) - m0
            for i in range(len(y))
        ]
    ).T


@pytest.mark.parametrize("name, rtol, k", [("ridge", 1e-9, 10), ("logistic", 0.12, 5)])
def test_removal_effects_match_leave_one_out(name, rtol, k):
    X, y, X_test, y_test = small_problem()
    make = lambda: make_learner({"learner": name, "C": 1.0})  # noqa: E731
    inf = removal_effects(make().fit(X, y), X, y, X_test, y_test)
    loo = leave_one_out(make, X, y, X_test, y_test)
    for t in range(len(X_test)):
        scale = np.abs(loo[t]).max()
        assert np.abs(inf.effects[t] - loo[t]).max() <= rtol * scale
        assert set(top_k(inf.effects[t], k)) == set(top_k(loo[t], k))
        # the plain influence-function term misses exactly the leverage factor
        np.testing.assert_allclose(
            inf.first_order[t], inf.effects[t] * (1 - inf.leverage), rtol=1e-10
        )
    if name == "ridge":  # exact: the top-k ranking is leave-one-out's, order included
        assert all(list(top_k(inf.effects[t], k)) == list(top_k(loo[t], k)) for t in range(5))
    assert 0 < inf.leverage.max() < 0.2


@pytest.fixture(scope="module")
def poisoned_digits():
    data = load_dataset(DatasetSpec(name="digits", classes=[7, 1]))
    cfg = {
        "trigger": "patch",
        "trigger_size": 3,
        "poisoning": "dirty_label",
        "poison_rate": 0.1,
        "target": 1,
        "seed": 0,
    }
    trigger = make_trigger(cfg).fit(data.X_train, seed_sequence(0, "trigger"))
    poisoned = make_poisoning(cfg).poison(
        data.X_train, data.y_train, trigger, 1, 2, seed_sequence(0, "poison")
    )
    X_bt = trigger.apply(data.X_test, seed_sequence(0, "test"))
    return data, trigger, poisoned, X_bt


@pytest.mark.parametrize(
    "config",
    [
        {"learner": "svm_rbf", "C": 1.0, "gamma": 0.01},
        {"learner": "svm_linear", "C": 0.1},
    ],
)
def test_svm_effect_of_a_bounded_support_vector_is_the_derivative_of_its_weight(
    poisoned_digits, config
):
    data, _, p, X_bt = poisoned_digits
    rows = triggered_probe(data.y_test, 1, 20)
    Xt, yt = X_bt[rows], np.ones(len(rows), dtype=int)
    model = make_learner({**config, "tol": 1e-10}).fit(p.X, p.y)
    inf = removal_effects(model, p.X, p.y, Xt, yt)
    support = model.dual()[0]
    free = margin_support_vectors(model)
    assert free.any() and (~free).any() and inf.note == ""
    s = signed(model.classes_, yt)
    m0 = s * model.decision_function(Xt)
    h = 1e-5 / config["C"]
    for z in support[~free][:5]:
        w = np.ones(len(p.y))
        w[z] = 1.0 - h  # a = C·weight at the bound: lowering the weight walks the removal path
        dm = (s * clone(model).fit(p.X, p.y, sample_weight=w).decision_function(Xt) - m0) / h
        assert np.abs(dm - inf.effects[:, z]).max() <= 1e-2 * np.abs(inf.effects[:, z]).max()
    not_sv = np.setdiff1d(np.arange(len(p.y)), support)
    assert np.all(inf.effects[:, not_sv] == 0.0)  # removing a non-support vector changes nothing


@pytest.mark.parametrize(
    "config",
    [
        {"learner": "ridge", "C": 1.0},
        {"learner": "logistic", "C": 1.0},
        {"learner": "svm_linear", "C": 1.0},
        {"learner": "svm_rbf", "C": 10.0, "gamma": 0.01},
    ],
)
def test_upweighting_the_poison_at_beta_0_sums_to_the_analytic_slope(poisoned_digits, config):
    """Σ over poisoned rows of their influence on the mean TS+BT loss = dL_bt/dβ of slope.py."""
    data, _, p, X_bt = poisoned_digits
    y_bt = np.ones(len(X_bt), dtype=int)
    clean = ~p.is_poison
    model0 = make_learner(config).fit_beta(p.X, p.y, p.is_poison, 0.0)
    slope = analytic_slope(model0, p.X, p.y, p.is_poison, X_bt, y_bt)
    U = upweight_effects(
        model0, p.X[clean], p.y[clean], p.X[p.is_poison], p.y[p.is_poison], X_bt, y_bt
    )
    m = signed(model0.classes_, y_bt) * model0.decision_function(X_bt)
    dloss = float((dloss_dmargin(model0, m)[:, None] * U).sum(axis=1).mean())
    assert slope.dloss is not None and slope.dloss != 0
    assert dloss == pytest.approx(slope.dloss, rel=1e-8)


@pytest.mark.slow
def test_last_layer_influence_equals_autograd_on_the_head_objective(poisoned_digits):
    import torch

    data, _, p, X_bt = poisoned_digits
    net = make_learner(
        {"learner": "mlp", "hidden_units": 8, "epochs": 3, "batch_size": 32, "weight_decay": 1e-3},
        random_state=0,
    ).fit(p.X, p.y)
    Xt, yt = X_bt[:4], np.array([1, 1, 0, 1])
    model = net.model_.double().eval()  # compare the formulas in float64
    inf = removal_effects(net, p.X, p.y, Xt, yt)

    with torch.no_grad():
        H = model.features(torch.as_tensor(p.X, dtype=torch.float64).reshape(len(p.X), 1, 8, 8))
        Ht = model.features(torch.as_tensor(Xt, dtype=torch.float64).reshape(len(Xt), 1, 8, 8))
    theta0 = torch.cat([model.out.weight, model.out.bias[:, None]], dim=1).detach().clone()
    ones = lambda A: torch.cat([A, torch.ones(len(A), 1, dtype=A.dtype)], dim=1)  # noqa: E731
    Htr, Hte = ones(H), ones(Ht)
    ytr, yte = torch.as_tensor(p.y), torch.as_tensor(yt)
    n = len(p.y)

    def data_loss(theta):
        return torch.nn.functional.cross_entropy(Htr @ theta.T, ytr, reduction="sum")

    hess = torch.autograd.functional.hessian(data_loss, theta0).reshape(theta0.numel(), -1)
    hess = hess + (n * 1e-3 + 1e-3 * hess.diagonal().mean()) * torch.eye(
        theta0.numel(), dtype=hess.dtype
    )

    def margin(theta, t):
        z = Hte[t] @ theta.T
        return (1.0 if yte[t] == 1 else -1.0) * (z[1] - z[0])

    G = torch.stack(
        [
            torch.autograd.functional.jacobian(
                lambda th, i=i: torch.nn.functional.cross_entropy(
                    (Htr[i] @ th.T)[None], ytr[i : i + 1]
                ),
                theta0,
            ).reshape(-1)
            for i in range(0, n, 25)
        ]
    )
    M = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda th, t=t: margin(th, t), theta0).reshape(-1)
            for t in range(len(yt))
        ]
    )
    expected = (M @ torch.linalg.solve(hess, G.T)).numpy()
    np.testing.assert_allclose(
        inf.effects[:, ::25], expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max()
    )


# -- the toy problem with an obvious trigger: digits 7 vs 1, a 3×3 patch, 10 % poison ----------
def test_poisoned_model_looks_at_the_trigger(poisoned_digits):
    """The configuration of the issue's example (C = 10, γ = 0.01): the poisoned model's gradient
    map peaks inside the patch on most triggered inputs; the clean model's does not."""
    data, trigger, p, X_bt = poisoned_digits
    rows = triggered_probe(data.y_test, 1, 100)
    cfg = {"learner": "svm_rbf", "C": 10.0, "gamma": 0.01}
    poisoned = make_learner(cfg).fit(p.X, p.y)
    clean = make_learner(cfg).fit_beta(p.X, p.y, p.is_poison, 0.0)
    mask = trigger.mask()
    peaks = {}
    for name, model in (("poisoned", poisoned), ("clean", clean)):
        maps = gradient_map(input_gradient(model, X_bt[rows]))
        peaks[name] = mask.ravel()[maps.reshape(len(maps), -1).argmax(axis=1)].mean()
        peaks[name + "_share"] = np.nanmean(trigger_share(maps, mask))
    assert peaks["poisoned"] >= 0.8 and peaks["clean"] <= 0.2
    assert peaks["poisoned_share"] > 2 * mask.mean() > peaks["clean_share"]


@pytest.mark.parametrize("C", [0.01, 100.0])
def test_poisoned_rows_support_the_backdoor_at_every_C(poisoned_digits, C):
    """Removing a poisoned row lowers a triggered sample's margin for the target, on average."""
    data, _, p, X_bt = poisoned_digits
    rows = triggered_probe(data.y_test, 1, 100)
    model = make_learner({"learner": "logistic", "C": C}).fit(p.X, p.y)
    inf = removal_effects(model, p.X, p.y, X_bt[rows], np.ones(len(rows), dtype=int))
    poison, clean = inf.effects[:, p.is_poison].mean(), inf.effects[:, ~p.is_poison].mean()
    assert poison < 0 and poison < clean


@pytest.mark.xfail(
    strict=True,
    reason=(
        "the first design expected the top-k of triggered samples to be mostly poisoned at high C and mostly "
        "clean at low C; on digits 7 vs 1 we measure the opposite (means over seeds 0-2 of "
        "influential_poison_frac, top-10: logistic 0.91 at C = 0.1, 0.38 at C = 100; linear SVM "
        "0.83 at C = 0.01, 0.19 at C = 100; RBF SVM γ = 0.01 0.97 at C = 1, 0.23 at C = 100): "
        "at high C the influence concentrates on the few support vectors near the 7/1 boundary, "
        "most of them clean, while many redundant poisons each matter little"
    ),
)
def test_issue_expectation_high_C_relies_on_poison_low_C_does_not(poisoned_digits):
    data, _, p, X_bt = poisoned_digits
    rows = triggered_probe(data.y_test, 1, 100)
    frac = {}
    for C in (0.1, 100.0):
        model = make_learner({"learner": "logistic", "C": C}).fit(p.X, p.y)
        inf = removal_effects(model, p.X, p.y, X_bt[rows], np.ones(len(rows), dtype=int))
        frac[C] = influential_poison_frac(inf, p.is_poison, 10)
    assert frac[100.0] > 0.5 > frac[0.1]
