"""scikit-learn learners with one regularisation knob, ``C``, and per-sample weights.

Every learner is a scikit-learn estimator: ``__init__`` stores keyword hyperparameters, ``fit(X, y,
sample_weight=None)`` flattens images to vectors and fits, fitted attributes end in ``_``. Each
hyperparameter is declared once, in the learner's ``Params`` model (type, range, default) in
`trainables.learners.params`; the ``__init__`` is written from it
(`trainables.components.Hyperparameters`), plus ``random_state``.
Larger C means weaker regularisation for all of them:

- ``svm_linear``: ``SVC(kernel="linear")`` — the plain hinge problem ½‖w‖² + C·Σ sᵢ·hinge.
- ``svm_rbf``: ``SVC(kernel="rbf", gamma=γ)`` — the same in the RBF feature space.
- ``ridge``: ``RidgeClassifier(alpha=1/(2C))`` on ±1 targets — Σ sᵢ(yᵢ − f(xᵢ))² + α‖w‖², i.e. the
  squared-loss problem ½‖w‖² + C·Σ sᵢ(yᵢ − f(xᵢ))² scaled by 1/(2C); intercept unpenalised.
- ``logistic``: ``LogisticRegression(C)`` — ½‖w‖² + C·Σ sᵢ·logloss, intercept unpenalised.

Tight solver tolerances are the default because learning curves and finite-difference slopes
compare fits that differ by a tiny weight (SVC tol ≤ 1e-7 keeps the sign of a finite difference; docs/science.md §6).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.svm import SVC

from trainables.components import Hyperparameters
from trainables.learners.params import LogisticParams, RidgeParams, SVMLinearParams, SVMRBFParams


def flatten(X: np.ndarray) -> np.ndarray:
    """Images (n, H, W[, C]) to float64 vectors (n, H·W·C)."""
    X = np.asarray(X, dtype=np.float64)
    return X.reshape(len(X), -1)


class SklearnLearner(Hyperparameters, ClassifierMixin, BaseEstimator):
    """Shared fit/predict: subclasses declare ``Params`` and build ``model_`` in ``_make``."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "sklearn"

    def _make(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, X, y, sample_weight=None):
        self.model_ = self._make()
        Xf = flatten(X)
        if sample_weight is None:
            self.model_.fit(Xf, y)
        else:
            self.model_.fit(Xf, y, sample_weight=np.asarray(sample_weight, dtype=np.float64))
        self.classes_ = self.model_.classes_
        return self

    def fit_beta(self, X, y, is_poison, beta: float):
        """Fit with weight 1 on clean and ``beta`` on poisoned rows (docs/science.md §5).

        β = 0 fits the clean rows only: SVC drops zero-weight rows itself and then indexes its
        support vectors in the reduced set, so the reduced set is made explicit here.
        """
        is_poison = np.asarray(is_poison, dtype=bool)
        if beta == 0:
            return self.fit(np.asarray(X)[~is_poison], np.asarray(y)[~is_poison])
        return self.fit(X, y, sample_weight=np.where(is_poison, float(beta), 1.0))

    def predict(self, X):
        return self.model_.predict(flatten(X))

    def decision_function(self, X):
        return self.model_.decision_function(flatten(X))

    def weight_vector(self) -> np.ndarray | None:
        """w for linear models (binary), else None."""
        coef = getattr(self.model_, "coef_", None)
        if coef is not None and coef.ndim == 1:  # RidgeClassifier's binary coef_ is (d,)
            return np.asarray(coef, dtype=np.float64)
        if coef is None or coef.shape[0] != 1:
            return None
        return np.asarray(coef, dtype=np.float64).ravel()


class KernelSVM(SklearnLearner):
    """SVC learners: the kernel and the signed dual solution, for slopes and RKHS norms."""

    def kernel_matrix(self, A, B) -> np.ndarray:
        """K(A, B) as the fitted SVC computes it (plain numpy: no per-call validation cost)."""
        A, B = flatten(A), flatten(B)
        dot = A @ B.T
        if self.model_.kernel == "linear":
            return dot
        sq = np.einsum("ij,ij->i", A, A)[:, None] + np.einsum("ij,ij->i", B, B)[None, :] - 2.0 * dot
        np.maximum(sq, 0.0, out=sq)
        sq *= -float(self.model_.gamma)
        return np.exp(sq, out=sq)

    def dual(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(support indices into the fitted rows, signed coefficients yᵢαᵢ, support vectors).

        Binary only; the sign is sklearn's: f(x) = Σ coefᵢ·K(svᵢ, x) + intercept > 0 → classes_[1].
        """
        m = self.model_
        return m.support_, np.asarray(m.dual_coef_, dtype=np.float64).ravel(), m.support_vectors_

    def decision_function(self, X):
        """Binary: Σ coefᵢ·K(svᵢ, x) + b in numpy — equal to libsvm's to rounding, and ~10× faster
        than its per-sample dense predict (learning curves evaluate every fit)."""
        if len(self.classes_) != 2:
            return super().decision_function(X)
        _, coef, sv = self.dual()
        return self.kernel_matrix(X, sv) @ coef + float(np.ravel(self.model_.intercept_)[0])


class SVMLinear(KernelSVM):
    name = "svm_linear"
    loss = "hinge"

    Params = SVMLinearParams

    def _make(self):
        return SVC(kernel="linear", C=self.C, tol=self.tol, max_iter=-1)


class SVMRBF(KernelSVM):
    name = "svm_rbf"
    loss = "hinge"

    Params = SVMRBFParams

    def _make(self):
        return SVC(kernel="rbf", C=self.C, gamma=self.gamma, tol=self.tol, max_iter=-1)


class Ridge(SklearnLearner):
    name = "ridge"
    loss = "squared"

    Params = RidgeParams

    def _make(self):
        return RidgeClassifier(alpha=1.0 / (2.0 * self.C), solver="cholesky")


class Logistic(SklearnLearner):
    name = "logistic"
    loss = "logistic"

    Params = LogisticParams

    def _make(self):
        return LogisticRegression(
            C=self.C,
            tol=self.tol,
            max_iter=self.max_iter,
            solver=self.solver,
            random_state=self.random_state,
        )
