"""Learners: every one a scikit-learn estimator, named in the ``LEARNERS`` registry."""

from __future__ import annotations

from backdoor_sweep.exports import lazy_exports

_WHERE = {
    "CNN": "torch_learners",
    "CNNParams": "torch_learners",
    "KernelSVM": "sklearn_learners",
    "LEARNERS": "registry",
    "Logistic": "sklearn_learners",
    "MLPLearner": "torch_learners",
    "MLPParams": "torch_learners",
    "ResNet18": "torch_learners",
    "Ridge": "sklearn_learners",
    "SVMLinear": "sklearn_learners",
    "SVMRBF": "sklearn_learners",
    "SklearnLearner": "sklearn_learners",
    "TorchLearner": "torch_learners",
    "TorchLogistic": "torch_learners",
    "TorchParams": "torch_learners",
    "beta_weights": "torch_learners",
    "flatten": "sklearn_learners",
    "make_learner": "registry",
    "ray_resources": "torch_learners",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
