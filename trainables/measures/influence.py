"""Influence functions: which training samples drive a test prediction?

**What is measured.** For a model fitted on a training set and a test sample t scored against a
label y_t, ``removal_effects`` gives, for every training row i, the first-order change of the test
sample's *margin* when i is removed from the training set: binary models m_t = ±1·f(x_t) (+1 for
``classes_[1]``, f the decision function), multiclass networks m_t = log p(y_t | x_t). Negative
means i supports scoring x_t as y_t. The *k most influential* samples are the k largest |effect|.
Why the margin and not the loss: for one test sample the loss change is ℓ'(m_t)·(margin change)
with a factor common to every training row, so the ranking is the same for every smooth loss — and
the hinge loss is flat beyond the margin, where it would call every training point irrelevant.
``Influence.loss_effects`` gives the loss change too.

**Which model.** The model actually trained on the poisoned training set (weight 1 on every row,
no defence — as the learning curves, `trainables.measures.curves`; networks: the trial's model, see
``influence_model``). That is the model whose prediction is being explained; at β = 0 the
poisoned rows would not be in the training set at all.
``upweight_effects`` is the β = 0 view: the effect of *adding* points with a small weight to the
clean model; summed over the poisoned rows and averaged over TS+BT in loss units it is exactly
dL_bt/dβ of the analytic slope (tested), which ties both to the same Hessian and KKT system.

**How** (the machinery of `trainables.measures.slope`):

- ridge, logistic (smooth): up-weighting row i by ε moves θ = (w, b) by −ε·H⁻¹·c·∇ℓᵢ, H the Hessian
  of the estimator's objective at the fitted model (``objective_hessian``), c its loss weight;
  removal is ε = −1 (Koh & Liang 2017): first-order effect ∇m_tᵀ·H⁻¹·c·∇ℓᵢ. Removing row i also
  removes its curvature from H; one Newton step of the refit divides by 1 − hᵢ (hᵢ the leverage),
  which is exact leave-one-out for ridge and what we rank by (``Influence.first_order`` keeps
  the plain term). Measured against refitting without each row (tests/test_influence.py).
- hinge SVMs (linear and RBF kernels): along the exact decremental path (Cauwenberghs & Poggio
  2001), row i's dual variable aᵢ goes to 0 while the other margin support vectors keep
  y f(x) = 1 and yᵀa = 0 (``kkt_response``); effect = −aᵢ·∂m_t/∂aᵢ, exact while no active set
  changes. Rows that are not support vectors have effect 0. When no other margin support vector
  remains, the intercept is not determined (any b of an interval is optimal) and we hold it and
  the other dual variables fixed: effect = −aᵢyᵢ·y_t·K(xᵢ, x_t) (counted in ``note``).
- networks (a documented approximation): *last-layer* influence. The penultimate features
  h = ``model.features(x)`` are held fixed and the last layer is treated as multinomial logistic
  regression on them, with objective Σᵢ CE + (n·weight_decay/2)·‖θ‖² (the mean loss of training,
  times n). Its Hessian Σᵢ (diag pᵢ − pᵢpᵢᵀ) ⊗ h̃ᵢh̃ᵢᵀ is singular along the softmax's shift
  direction and near-singular on separable data, so we add a damping of 1e-3·mean(diag H)
  (Koh & Liang also damp); the shift direction does not change any prediction, so it does not
  change any effect. The latent regularisers are not part of this Hessian.

The sweepable summary ``influential_poison_frac`` (``influence_for_result``): for each triggered
non-target test sample (the first ``influence_samples``), scored against the target label, the
share of poisoned rows among its top-``influence_k``; averaged over those samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from trainables.learners.sklearn_learners import flatten
from trainables.measures.kkt import (
    dloss_dmargin,
    kkt_response,
    loss_gradients,
    loss_weight,
    margin_support_vectors,
    objective_hessian,
    parameters,
    solve_spd,
)
from trainables.measures.losses import signed

__all__ = [
    "Influence",
    "influence_for_result",
    "influential_poison_frac",
    "removal_effects",
    "top_k",
    "upweight_effects",
]

#: relative damping of the last-layer Hessian of networks
NETWORK_DAMPING = 1e-3
#: the last layer of a network may have at most this many parameters (a dense Hessian)
MAX_HEAD_PARAMETERS = 4000


@dataclass(frozen=True)
class Influence:
    """``effects[t, i]``: change of test sample t's margin when training row i is removed.

    ``margins`` are the test margins now, ``dloss`` the derivative ℓ'(m) of each test sample's loss
    (so ``loss_effects`` = dloss·effects), ``method`` names the computation and ``note`` says
    where it approximates. Smooth learners also keep the plain influence-function term
    ``first_order`` = ∇m_tᵀH⁻¹c∇ℓᵢ and the leverages hᵢ = c·ℓ''(mᵢ)·x̃ᵢᵀH⁻¹x̃ᵢ, with
    ``effects`` = first_order/(1 − hᵢ): one Newton step of the refit without row i (exact
    leave-one-out for ridge by Sherman–Morrison; second-order accurate for logistic).
    """

    effects: np.ndarray
    margins: np.ndarray
    dloss: np.ndarray
    method: str
    note: str = ""
    first_order: np.ndarray | None = None
    leverage: np.ndarray | None = None

    def loss_effects(self) -> np.ndarray:
        return self.dloss[:, None] * self.effects


def top_k(effects: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest |effect|, largest first (stable: ties keep row order)."""
    return np.argsort(-np.abs(np.asarray(effects)), kind="stable")[:k]


# -- scikit-learn learners -------------------------------------------------------------------
def _check_binary(learner) -> np.ndarray:
    classes = np.asarray(learner.classes_)
    if len(classes) != 2:
        raise ValueError(
            f"influence functions of {learner.name} need a binary problem; got {len(classes)} classes"
        )
    return classes


def _margin_gradients(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∇_θ m = y·(x, 1) for linear models, one row per sample."""
    return y[:, None] * np.hstack([X, np.ones((len(X), 1))])


def _solve(H: np.ndarray, B: np.ndarray, what: str) -> np.ndarray:
    Z = solve_spd(H, B)
    if Z is None:
        raise ValueError(f"the {what} Hessian is singular to working precision")
    return Z


def _svm_removal(learner, Xtr, ytr, Xte, yte) -> tuple[np.ndarray, str]:
    support, coef, sv = learner.dual()
    a = np.abs(coef)
    free = margin_support_vectors(learner)
    effects = np.zeros((len(Xte), len(Xtr)))
    frozen = 0

    def respond(S_rows, z_rows):
        return kkt_response(
            learner, Xtr[S_rows], ytr[S_rows], Xtr[z_rows], ytr[z_rows], np.eye(len(z_rows)), Xte
        )

    S = support[free]
    bounded = support[~free]
    if len(bounded):
        df = respond(S, bounded) if len(S) else None
        if df is None:
            df = ytr[bounded][None, :] * learner.kernel_matrix(Xte, Xtr[bounded])
            frozen += len(bounded)
        effects[:, bounded] = -a[~free][None, :] * (yte[:, None] * df)
    for pos, (j, z) in enumerate(zip(np.flatnonzero(free), S, strict=True)):
        rest = np.delete(S, pos)  # the other margin support vectors
        df = respond(rest, np.array([z])) if len(rest) else None
        if df is None:
            df = ytr[z] * learner.kernel_matrix(Xte, Xtr[[z]])
            frozen += 1
        effects[:, z] = -a[j] * yte * df[:, 0]
    note = (
        f"{frozen} support vector(s) with no other margin support vector to keep the intercept "
        "determined: intercept and other dual variables held fixed"
        if frozen
        else ""
    )
    return effects, note


def _svm_upweight(learner, Xc, yc, Xn, yn, Xte, yte) -> np.ndarray:
    """dm_t/dεᵢ for new points at weight εᵢ → 0⁺ (those inside the margin enter at aᵢ = C·εᵢ)."""
    support = learner.dual()[0]
    S = support[margin_support_vectors(learner)]
    if not len(S):
        raise ValueError(
            "no margin support vector at β=0: the intercept is not unique (see the one-sided slope)"
        )
    C = float(learner.model_.C)
    effects = np.zeros((len(Xte), len(Xn)))
    enter = np.flatnonzero(yn * learner.decision_function(Xn) < 1.0)
    if len(enter):
        df = kkt_response(learner, Xc[S], yc[S], Xn[enter], yn[enter], C * np.eye(len(enter)), Xte)
        if df is None:
            raise ValueError(
                f"the KKT system on the {len(S)} margin support vectors is inconsistent"
            )
        effects[:, enter] = yte[:, None] * df
    return effects


def _sklearn_influence(learner, X, y, X_test, y_test) -> Influence:
    classes = _check_binary(learner)
    Xtr, Xte = flatten(X), flatten(X_test)
    ytr, yte = signed(classes, np.asarray(y)), signed(classes, np.asarray(y_test))
    m = yte * np.asarray(learner.decision_function(Xte), dtype=np.float64)
    if learner.loss == "hinge":
        effects, note = _svm_removal(learner, Xtr, ytr, Xte, yte)
        method = "dual KKT system on the margin support vectors (decremental path)"
        return Influence(effects, m, dloss_dmargin(learner, m), method, note)
    H = objective_hessian(learner, Xtr)
    G = loss_weight(learner) * loss_gradients(learner, Xtr, ytr)
    Z = _solve(H, _margin_gradients(Xte, yte).T, learner.name)
    Xt = np.hstack([Xtr, np.ones((len(Xtr), 1))])
    m_tr = ytr * (Xt @ parameters(learner))
    curv = loss_weight(learner) * _d2loss(learner, m_tr)
    leverage = curv * np.einsum("ij,ji->i", Xt, _solve(H, Xt.T, learner.name))
    first = Z.T @ G.T
    return Influence(
        first / (1.0 - leverage)[None, :],
        m,
        dloss_dmargin(learner, m),
        "Hessian of the training objective, one Newton step per removed row",
        "",
        first,
        leverage,
    )


def _d2loss(learner, m: np.ndarray) -> np.ndarray:
    """ℓ''(m): 2 for the squared loss, σ(m)σ(−m) for the logistic loss."""
    if learner.loss == "squared":
        return np.full_like(m, 2.0)
    p = 0.5 * (1.0 + np.tanh(0.5 * m))
    return p * (1.0 - p)


def upweight_effects(learner0, X_clean, y_clean, X_new, y_new, X_test, y_test) -> np.ndarray:
    """The β = 0 view: dm_t/dεᵢ of adding each row of ``X_new`` with a small weight εᵢ.

    ``learner0`` is fitted on (X_clean, y_clean) only (scikit-learn, binary). For SVMs this is the
    right derivative at εᵢ = 0⁺ and needs a margin support vector (as the analytic slope does).
    """
    classes = _check_binary(learner0)
    Xc, Xn, Xte = flatten(X_clean), flatten(X_new), flatten(X_test)
    yc, yn = signed(classes, np.asarray(y_clean)), signed(classes, np.asarray(y_new))
    yte = signed(classes, np.asarray(y_test))
    if learner0.loss == "hinge":
        return _svm_upweight(learner0, Xc, yc, Xn, yn, Xte, yte)
    G = loss_weight(learner0) * loss_gradients(learner0, Xn, yn)
    Z = _solve(objective_hessian(learner0, Xc), _margin_gradients(Xte, yte).T, learner0.name)
    return -(Z.T @ G.T)


# -- networks: last-layer influence ----------------------------------------------------------
def _features(learner, X: np.ndarray, batch: int = 1024) -> np.ndarray:
    import torch

    from trainables.learners.training import images_to_tensor

    model = learner.model_
    model.eval()
    dtype = next(model.parameters()).dtype
    out = []
    with torch.no_grad():
        for i in range(0, len(X), batch):
            x = images_to_tensor(X[i : i + batch], learner.device_).to(dtype)
            out.append(model.features(x).double().cpu().numpy())
    H = np.concatenate(out) if out else np.zeros((0, 0))
    return np.hstack([H, np.ones((len(H), 1))])


def _head(learner) -> np.ndarray:
    """θ as a (K, d + 1) matrix [W b] of the network's last layer."""
    model = learner.model_
    layer = getattr(model, "out", None) or getattr(model, "fc", None)
    if layer is None:
        raise ValueError(f"network {type(model).__name__} has no last layer named out or fc")
    W = layer.weight.detach().double().cpu().numpy()
    b = layer.bias.detach().double().cpu().numpy()
    return np.hstack([W, b[:, None]])


def _softmax(Z: np.ndarray) -> np.ndarray:
    Z = Z - Z.max(axis=1, keepdims=True)
    P = np.exp(Z)
    return P / P.sum(axis=1, keepdims=True)


def _network_influence(learner, X, y, X_test, y_test) -> Influence:
    theta = _head(learner)
    K, d1 = theta.shape
    if K * d1 > MAX_HEAD_PARAMETERS:
        raise ValueError(
            f"last-layer influence needs at most {MAX_HEAD_PARAMETERS} last-layer parameters; "
            f"got {K * d1}"
        )
    Htr, Hte = _features(learner, X), _features(learner, X_test)
    Ptr, Pte = _softmax(Htr @ theta.T), _softmax(Hte @ theta.T)
    pos_tr = np.searchsorted(learner.classes_, np.asarray(y))
    pos_te = np.searchsorted(learner.classes_, np.asarray(y_test))
    n = len(Htr)
    # Hessian of Σᵢ CE: block (k, l) = Σᵢ (δ_kl p_ik − p_ik p_il) h̃ᵢh̃ᵢᵀ
    hess = np.zeros((K, d1, K, d1))
    for k in range(K):
        for l in range(k, K):
            w = (Ptr[:, k] * (k == l)) - Ptr[:, k] * Ptr[:, l]
            block = (Htr * w[:, None]).T @ Htr
            hess[k, :, l, :] = block
            hess[l, :, k, :] = block.T
    hess = hess.reshape(K * d1, K * d1)
    decay = float(getattr(learner, "weight_decay", 0.0))
    hess += (n * decay + NETWORK_DAMPING * float(np.mean(np.diag(hess)))) * np.eye(K * d1)
    # score gradients: binary margin y·(z₁ − z₀); multiclass log p_y → (e_y − p) ⊗ h̃
    if K == 2:
        s = np.where(pos_te == 1, 1.0, -1.0)
        coeff = np.stack([-s, s], axis=1)
        m = s * (Hte @ (theta[1] - theta[0]))
        dloss = -_softmax(np.stack([np.zeros_like(m), -m], axis=1))[:, 1]  # −σ(−m)
    else:
        coeff = -Pte.copy()
        coeff[np.arange(len(pos_te)), pos_te] += 1.0
        m = np.log(np.clip(Pte[np.arange(len(pos_te)), pos_te], 1e-300, None))
        dloss = -np.ones_like(m)  # CE = −log p_y
    M = (coeff[:, :, None] * Hte[:, None, :]).reshape(len(Hte), K * d1)
    Z = _solve(hess, M.T, "last-layer").reshape(K, d1, len(Hte))
    # ∇CEᵢ = (pᵢ − e_yᵢ) ⊗ h̃ᵢ; effect[t, i] = Σ_k (P − E)[i, k]·(h̃ᵢ · Z_k[:, t])
    E = Ptr.copy()
    E[np.arange(n), pos_tr] -= 1.0
    effects = np.zeros((len(Hte), n))
    for k in range(K):
        effects += ((Htr @ Z[k]) * E[:, k][:, None]).T
    return Influence(
        effects,
        m,
        dloss,
        "last-layer influence (penultimate features fixed)",
        f"damped Hessian (+{NETWORK_DAMPING:g}·mean diagonal); latent regularisers not included",
    )


def removal_effects(learner, X, y, X_test, y_test) -> Influence:
    """First-order change of each test sample's margin when each training row is removed.

    ``learner`` is fitted on (X, y) with weight 1 on every row; ``y_test`` are the labels the test
    samples are scored against (the target for triggered samples). See the module docstring.
    """
    if getattr(learner, "kind", "") == "torch":
        return _network_influence(learner, X, y, X_test, y_test)
    return _sklearn_influence(learner, X, y, X_test, y_test)


# -- the sweepable summary -------------------------------------------------------------------
def influential_poison_frac(influence: Influence, is_poison: np.ndarray, k: int) -> float:
    """Mean over test samples of the share of poisoned rows among their top-k by |effect|."""
    is_poison = np.asarray(is_poison, dtype=bool)
    k = min(int(k), len(is_poison))
    if len(influence.effects) == 0 or k == 0:
        return float("nan")
    shares = [is_poison[top_k(row, k)].mean() for row in influence.effects]
    return float(np.mean(shares))


def triggered_probe(y_test: np.ndarray, target: int, n: int) -> np.ndarray:
    """The test rows used for the summary: the first ``n`` whose true label is not the target."""
    return np.flatnonzero(np.asarray(y_test) != target)[:n]


def influence_model(config: dict, learner, poisoned):
    """The model influence explains: the trial's learner when it was fitted on the whole poisoned
    set (defence ``none``), else (scikit-learn) a copy refitted on it without the defence. A
    network is always the trial's own model: its last-layer influence does not assume an optimum,
    and a refit would cost a full training (and ``clone`` would keep DP-SGD's settings)."""
    if config.get("defence", "none") == "none" or getattr(learner, "kind", "") == "torch":
        return learner
    return clone(learner).fit(poisoned.X, poisoned.y)


def influence_for_result(
    config: dict, learner, poisoned, data, X_bt: np.ndarray, target: int
) -> dict:
    """Columns for the trials row: ``influential_poison_frac`` (and ``influence_note``)."""
    k = int(config["influence_k"])
    rows = triggered_probe(data.y_test, target, int(config.get("influence_samples", 100)))
    model = influence_model(config, learner, poisoned)
    inf = removal_effects(
        model,
        poisoned.X,
        poisoned.y,
        X_bt[rows],
        np.full(len(rows), target, dtype=np.asarray(data.y_test).dtype),
    )
    return {
        "influential_poison_frac": influential_poison_frac(inf, poisoned.is_poison, k),
        "influence_note": inf.note,
    }
