"""Learners: every one a scikit-learn estimator, declared in the ``LEARNERS`` registry.

The declarations (`registry`, `params`) import neither scikit-learn nor torch; an estimator
class is imported when one is made (`make_learner`, `Learner.estimator`).
"""

from __future__ import annotations

from backdoor_sweep.exports import lazy_exports

_WHERE = {
    "CNN": "torch_learners",
    "CNNParams": "params",
    "KernelSVM": "sklearn_learners",
    "LEARNERS": "registry",
    "Learner": "registry",
    "Logistic": "sklearn_learners",
    "LogisticParams": "params",
    "MLPLearner": "torch_learners",
    "MLPParams": "params",
    "ResNet18": "torch_learners",
    "Ridge": "sklearn_learners",
    "RidgeParams": "params",
    "SVMLinear": "sklearn_learners",
    "SVMLinearParams": "params",
    "SVMRBF": "sklearn_learners",
    "SVMRBFParams": "params",
    "SklearnLearner": "sklearn_learners",
    "TorchLearner": "torch_learners",
    "TorchLogistic": "torch_learners",
    "TorchParams": "params",
    "beta_weights": "torch_learners",
    "flatten": "sklearn_learners",
    "make_learner": "registry",
    "ray_resources": "torch_learners",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
