"""The Hessian and dual-KKT algebra that the backdoor learning slope and the influence functions share.

Smooth objectives (ridge, logistic): the gradient of one sample's loss and the Hessian of the
objective exactly as the estimator defines it (its C scaling, its unpenalised intercept).
Hinge-loss SVMs: the response of the decision function when some dual variables are forced to
move while the margin support vectors keep yᵢf(xᵢ) = 1 and yᵀa = 0 (docs/science.md, "Slope").
"""

from __future__ import annotations

import numpy as np

from trainables.measures.losses import signed  # noqa: F401  (re-exported for influence)

__all__ = [
    "BOUND_RTOL",
    "KKT_RTOL",
    "dloss_dmargin",
    "kkt_response",
    "loss_gradients",
    "loss_weight",
    "margin_support_vectors",
    "objective_hessian",
    "parameters",
    "sigmoid",
    "solve_kkt",
    "solve_spd",
    "with_one",
]


#: a dual coefficient within this fraction of C from 0 or C counts as at its bound
BOUND_RTOL = 1e-8


#: KKT residual (relative) above which the SVM system is called inconsistent
KKT_RTOL = 1e-6


def with_one(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((len(X), 1))])


def solve_spd(H: np.ndarray, g: np.ndarray) -> np.ndarray | None:
    """H⁻¹g for a symmetric positive definite H; None when H is singular to working precision."""
    try:
        c = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return None
    d = np.diag(c)
    if d.min() <= np.sqrt(np.finfo(float).eps) * d.max():
        return None
    return np.linalg.solve(c.T, np.linalg.solve(c, g))


def parameters(learner) -> np.ndarray:
    """θ = (w, b) of a fitted binary linear model."""
    return np.append(learner.weight_vector(), float(np.ravel(learner.model_.intercept_)[0]))


def loss_weight(learner) -> float:
    """The factor of one sample's loss in the estimator's objective: 1 for ridge, C for logistic."""
    return 1.0 if learner.loss == "squared" else float(learner.model_.C)


def dloss_dmargin(learner, m: np.ndarray) -> np.ndarray:
    """ℓ'(m) on the binary margin m = y·f(x): squared −2(1 − m), logistic −σ(−m), hinge −1[m < 1]."""
    m = np.asarray(m, dtype=np.float64)
    if learner.loss == "squared":
        return -2.0 * (1.0 - m)
    if learner.loss == "logistic":
        return -sigmoid(-m)
    if learner.loss == "hinge":
        return -(m < 1.0).astype(np.float64)
    raise ValueError(f"loss must be one of squared, logistic, hinge; got {learner.loss!r}")


def loss_gradients(learner, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∇_θ ℓ(xᵢ, yᵢ) per row of the flattened X (labels ±1): ℓ'(mᵢ)·yᵢ·(xᵢ, 1)."""
    Xt = with_one(X)
    m = y * (Xt @ parameters(learner))
    return (dloss_dmargin(learner, m) * y)[:, None] * Xt


def objective_hessian(learner, X: np.ndarray) -> np.ndarray:
    """Hessian in θ = (w, b) of the estimator's objective over the rows X (weight 1 each).

    Ridge: 2·(X̃ᵀX̃ + α·D); logistic: C·X̃ᵀ diag(p(1 − p)) X̃ + D; D = I without the intercept.
    """
    Xt = with_one(X)
    D = np.eye(Xt.shape[1])
    D[-1, -1] = 0.0  # the intercept is not penalised
    if learner.loss == "squared":
        return 2.0 * (Xt.T @ Xt + float(learner.model_.alpha) * D)
    p = sigmoid(Xt @ parameters(learner))
    return float(learner.model_.C) * (Xt.T * (p * (1.0 - p))) @ Xt + D


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def margin_support_vectors(learner) -> np.ndarray:
    """Mask over an SVC's support vectors strictly inside (0, C): they pin the intercept."""
    C = float(learner.model_.C)
    a = np.abs(learner.dual()[1])
    return (a > BOUND_RTOL * C) & (a < (1.0 - BOUND_RTOL) * C)


def kkt_response(learner, Xs, ys, Xf, yf, W, X_eval) -> np.ndarray | None:
    """df(X_eval) when the dual variables of the forcing points F move, the SVM staying optimal.

    Column j of ``W`` (|F| × m) gives da_F; the margin support vectors S (``Xs``, labels ``ys``)
    re-solve to keep yᵢf(xᵢ) = 1 and the intercept keeps yᵀa = 0 — the dual KKT system of the
    module docstring. Returns the (len(X_eval), m) changes of the decision function, or None when
    the system is inconsistent. Shared by the slope (F = the entering poisons) and the influence
    functions (F = one training point, `trainables.measures.influence`).
    """
    n = len(ys)
    A = np.zeros((n + 1, n + 1))
    A[:n, :n] = np.outer(ys, ys) * learner.kernel_matrix(Xs, Xs)
    A[:n, n] = ys
    A[n, :n] = ys
    Kf = learner.kernel_matrix(np.vstack([Xs, X_eval]), Xf)  # K(S, F) and K(eval, F)
    force = yf[:, None] * W  # signed dual changes yₚ·daₚ
    rhs = -np.vstack([ys[:, None] * (Kf[:n] @ force), force.sum(axis=0, keepdims=True)])
    sol = solve_kkt(A, rhs)
    if sol is None:
        return None
    da, db = sol[:n], sol[n]
    K_es = learner.kernel_matrix(X_eval, Xs) if n else np.zeros((len(X_eval), 0))
    return K_es @ (da * ys[:, None]) + Kf[n:] @ force + db[None, :]


def solve_kkt(A: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """A solution of the (symmetric, possibly singular) KKT system, or None if inconsistent."""
    try:
        sol = np.linalg.solve(A, rhs)
    except np.linalg.LinAlgError:
        sol = None
    scale = max(1.0, float(np.linalg.norm(rhs)))
    if (
        sol is None
        or not np.all(np.isfinite(sol))
        or np.linalg.norm(A @ sol - rhs) > KKT_RTOL * scale
    ):
        sol = np.linalg.lstsq(A, rhs, rcond=None)[0]
        if np.linalg.norm(A @ sol - rhs) > KKT_RTOL * scale:
            return None
    return sol
