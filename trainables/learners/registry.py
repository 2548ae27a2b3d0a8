"""``LEARNERS``: a learner's name in a spec maps to one estimator class (scikit-learn or torch)."""

from __future__ import annotations

from trainables.components import Registry, parse_params
from trainables.learners.sklearn_learners import SVMRBF, Logistic, Ridge, SVMLinear
from trainables.learners.torch_learners import CNN, MLPLearner, ResNet18, TorchLogistic

__all__ = ["LEARNERS", "make_learner"]

LEARNERS = Registry(
    "learner",
    SVMLinear,
    SVMRBF,
    Ridge,
    Logistic,
    CNN,
    MLPLearner,
    ResNet18,
    TorchLogistic,
)


def make_learner(config: dict, random_state: int | None = None):
    """The estimator named by ``config['learner']`` with its parameters from the flat config
    (and, for networks, the execution settings ``deterministic`` and ``precision`` when given)."""
    cls = LEARNERS.get_class(config["learner"], "learner")
    params = parse_params(cls, config)
    execution = {k: config[k] for k in getattr(cls, "EXECUTION_KEYS", ()) if k in config}
    return cls(**params.model_dump(), **execution, random_state=random_state)
