"""Every learner's hyperparameters, declared once, without scikit-learn or torch.

Each learner's ``Params`` model (types, ranges, defaults) lives here, apart from its estimator
class, so that checking a spec or naming the defender's parameters (`analysis.select`) does not
import the libraries that fit it. The estimator classes (`trainables.learners.sklearn_learners`,
`trainables.learners.torch_learners`) set these models as their ``Params``, and their
``__init__`` is written from them (`trainables.components.Hyperparameters`).

Larger ``C`` means weaker regularisation for every scikit-learn learner; the solver tolerances
are tight by default because learning curves and finite-difference slopes compare fits that
differ by a tiny weight (docs/science.md §6). The network learners share `TorchParams` (training
and latent-regulariser weights, docs/science.md §5, §8); ``cnn`` and ``mlp`` add their sizes,
``resnet18`` and ``torch_logistic`` add nothing — so ``resnet18`` takes no ``cnn_width``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from trainables.components import Params

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
PosInt = Annotated[int, Field(ge=1)]
NonNeg = Annotated[float, Field(ge=0, allow_inf_nan=False)]


# -- scikit-learn learners ----------------------------------------------------------------------
class SVMLinearParams(Params):
    """``svm_linear``: the hinge problem ½‖w‖² + C·Σ sᵢ·hinge; SVC tol ≤ 1e-7 keeps the sign of a
    finite difference."""

    C: PositiveFloat = 1.0
    tol: PositiveFloat = 1e-7


class SVMRBFParams(Params):
    """``svm_rbf``: the same problem in the RBF feature space of width ``gamma``."""

    C: PositiveFloat = 1.0
    gamma: PositiveFloat = 0.01
    tol: PositiveFloat = 1e-7


class RidgeParams(Params):
    """``ridge``: ½‖w‖² + C·Σ sᵢ(yᵢ − f(xᵢ))² on ±1 targets."""

    C: PositiveFloat = 1.0


class LogisticParams(Params):
    """``logistic``: ½‖w‖² + C·Σ sᵢ·logloss, intercept unpenalised."""

    C: PositiveFloat = 1.0
    tol: PositiveFloat = 1e-8
    max_iter: PosInt = 1000
    solver: Literal["newton-cholesky", "lbfgs", "newton-cg"] = "newton-cholesky"


# -- network learners ---------------------------------------------------------------------------
class TorchParams(Params):
    """Training hyperparameters and latent-regulariser weights shared by every network learner."""

    epochs: PosInt = 10
    batch_size: PosInt = 64
    lr: PositiveFloat = 0.05
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: NonNeg = 0.0
    augment: bool = False
    logit_squeeze_weight: NonNeg = 0.0
    manifold_mixup_weight: NonNeg = 0.0
    contrastive_weight: NonNeg = 0.0
    contrastive_margin: PositiveFloat = 1.0
    #: > 0 minimises the soft nearest neighbour loss (separates classes in the latent space);
    #: < 0 maximises it, as Frosst et al. do to entangle hidden layers
    snnl_weight: Annotated[float, Field(allow_inf_nan=False)] = 0.0
    snnl_temperature: PositiveFloat = 1.0


class CNNParams(TorchParams):
    """`TorchParams` and the small CNN's sizes: convolution channels and hidden units."""

    cnn_width: PosInt = 16
    hidden_units: PosInt = 64


class MLPParams(TorchParams):
    """`TorchParams` and the MLP's sizes: units per hidden layer and hidden layers."""

    hidden_units: PosInt = 64
    hidden_layers: PosInt = 1
