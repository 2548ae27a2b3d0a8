"""``LEARNERS``: a learner's name in a spec maps to its declaration; `make_learner` builds it.

A `Learner` declaration holds what checking a spec needs — the name, the kind (``sklearn`` or
``torch``) and the ``Params`` model (`trainables.learners.params`) — and names the module of its
estimator class, which is imported only when an estimator is made (`Learner.estimator`). So a spec
validates, and ``select`` tells the defender's parameters from the attacker's, without importing
scikit-learn, SciPy or torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Literal

from trainables.components import Params, Registry, parse_params
from trainables.learners.params import (
    CNNParams,
    LogisticParams,
    MLPParams,
    RidgeParams,
    SVMLinearParams,
    SVMRBFParams,
    TorchParams,
)

__all__ = ["LEARNERS", "Learner", "make_learner"]


@dataclass(frozen=True)
class Learner:
    """One learner as a spec names it: ``name``, ``kind`` and its ``Params`` model, and where its
    estimator class is (``module``, ``cls``), imported on first use.

    ``Params`` keeps the capital of the components' class attribute, so validation reads every
    registry the same way (``registry[name].Params.model_fields``).
    """

    name: str
    kind: Literal["sklearn", "torch"]
    Params: type[Params]
    module: str
    cls: str

    def estimator(self) -> type:
        """The estimator class (imports its module: scikit-learn or torch's side of the package).

        Raises ``TypeError`` when the class does not declare this learner (another name or
        ``Params`` model), so the declaration and the estimator cannot drift apart.
        """
        found = getattr(importlib.import_module(self.module), self.cls)
        declared = (found.name, found.kind, found.Params)
        if declared != (self.name, self.kind, self.Params):
            raise TypeError(
                f"{self.module}.{self.cls} declares {declared[:2]} with {declared[2].__name__}, "
                f"not learner {self.name!r} ({self.kind}) with {self.Params.__name__}"
            )
        return found


_SKLEARN = "trainables.learners.sklearn_learners"
_TORCH = "trainables.learners.torch_learners"

LEARNERS = Registry(
    "learner",
    Learner("svm_linear", "sklearn", SVMLinearParams, _SKLEARN, "SVMLinear"),
    Learner("svm_rbf", "sklearn", SVMRBFParams, _SKLEARN, "SVMRBF"),
    Learner("ridge", "sklearn", RidgeParams, _SKLEARN, "Ridge"),
    Learner("logistic", "sklearn", LogisticParams, _SKLEARN, "Logistic"),
    Learner("cnn", "torch", CNNParams, _TORCH, "CNN"),
    Learner("mlp", "torch", MLPParams, _TORCH, "MLPLearner"),
    Learner("resnet18", "torch", TorchParams, _TORCH, "ResNet18"),
    Learner("torch_logistic", "torch", TorchParams, _TORCH, "TorchLogistic"),
)


def make_learner(config: dict, random_state: int | None = None):
    """The estimator named by ``config['learner']`` with its parameters from the flat config
    (and, for networks, the execution settings ``deterministic`` and ``precision`` when given)."""
    learner = LEARNERS.get_class(config["learner"], "learner")
    params = parse_params(learner, config)
    cls = learner.estimator()
    execution = {k: config[k] for k in getattr(cls, "EXECUTION_KEYS", ()) if k in config}
    return cls(**params.model_dump(), **execution, random_state=random_state)
