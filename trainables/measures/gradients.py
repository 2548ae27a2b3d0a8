"""Input-gradient maps: where does a model look?

``input_gradient(learner, X, target)`` is the exact gradient of the decision function with respect
to the input, one per image, in the images' own shape:

- linear models (``ridge``, ``logistic``, ``svm_linear``, ``torch_logistic`` when binary): the
  weight vector w, the same for every input (multiclass scikit-learn linear models: the row of
  ``coef_`` of the ``target`` class);
- RBF SVMs, in closed form from the dual: ∇f(x) = Σᵢ cᵢ·K(svᵢ, x)·(−2γ)·(x − svᵢ), with cᵢ the
  signed dual coefficients (binary only: libsvm's multiclass decision is a vote);
- networks: autograd of the margin logit₁ − logit₀ (binary, the learner's ``decision_function``)
  or of the ``target`` class's logit (multiclass), in the dtype of the network's parameters.

``gradient_map`` turns gradients into what is drawn: |∇| per pixel, the maximum over channels for
colour images. ``trigger_share`` is the share of a map's mass that falls on the trigger's pixels.
"""

from __future__ import annotations

import numpy as np

from trainables.learners.sklearn_learners import flatten

__all__ = ["gradient_map", "input_gradient", "trigger_share"]


def _class_position(learner, target) -> int:
    classes = np.asarray(learner.classes_)
    pos = int(np.searchsorted(classes, target))
    if target is None or pos >= len(classes) or classes[pos] != target:
        raise ValueError(
            f"target must be one of the model's classes {classes.tolist()} for a multiclass "
            f"gradient map; got {target!r}"
        )
    return pos


def input_gradient(learner, X: np.ndarray, target=None) -> np.ndarray:
    """∂f(x)/∂x for each image of ``X`` (same shape as ``X``), f the decision function.

    Binary models: f is the decision function (its positive side is ``classes_[1]``). Multiclass:
    f is the score of class ``target`` (a label value of ``classes_``).
    """
    X = np.asarray(X, dtype=np.float64)
    if getattr(learner, "kind", "") == "torch":
        return _torch_gradient(learner, X, target)
    binary = len(learner.classes_) == 2
    w = learner.weight_vector() if binary else None
    if w is None and not binary:
        coef = getattr(learner.model_, "coef_", None)
        if coef is not None and not hasattr(learner, "dual"):  # SVC's coef_ rows are class pairs
            w = np.asarray(coef, dtype=np.float64)[_class_position(learner, target)]
    if w is not None:
        return np.broadcast_to(np.asarray(w).reshape(X.shape[1:]), X.shape).copy()
    if not binary:
        raise ValueError(
            f"gradient maps of {learner.name} need a binary problem (a multiclass SVM decides "
            f"by one-vs-one votes, which have no gradient); got {len(learner.classes_)} classes"
        )
    if hasattr(learner, "dual") and learner.model_.kernel == "rbf":
        return _rbf_gradient(learner, X).reshape(X.shape)
    raise ValueError(f"no input gradient for learner {getattr(learner, 'name', learner)!r}")


def _rbf_gradient(learner, X: np.ndarray) -> np.ndarray:
    """−2γ·Σᵢ cᵢ·K(svᵢ, x)·(x − svᵢ) for every row x, vectorised over the support vectors."""
    _, coef, sv = learner.dual()
    Xf = flatten(X)
    Kc = learner.kernel_matrix(Xf, sv) * coef[None, :]  # cᵢ·K(svᵢ, x)
    gamma = float(learner.model_.gamma)
    return -2.0 * gamma * (Kc.sum(axis=1)[:, None] * Xf - Kc @ sv)


def _torch_gradient(learner, X: np.ndarray, target) -> np.ndarray:
    import torch

    from trainables.learners.training import images_to_tensor

    model = learner.model_
    dtype = next(model.parameters()).dtype
    model.eval()
    x = images_to_tensor(X, learner.device_).to(dtype).requires_grad_(True)
    z = model(x)
    # binary: the margin logit₁ − logit₀ (decision_function); multiclass: the target's logit
    score = z[:, 1] - z[:, 0] if z.shape[1] == 2 else z[:, _class_position(learner, target)]
    (grad,) = torch.autograd.grad(score.sum(), x)
    g = grad.detach().double().cpu().numpy()  # (n, C, H, W)
    if X.ndim == 2:
        return g[:, 0, 0, :]
    if X.ndim == 3:
        return g[:, 0]
    return np.transpose(g, (0, 2, 3, 1))


def gradient_map(grad: np.ndarray, image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """|∇| per pixel: (n, H, W); colour images (n, H, W, C) take the maximum over channels.

    ``image_shape`` reshapes flat gradients (n, d) back to images first.
    """
    g = np.abs(np.asarray(grad, dtype=np.float64))
    if image_shape is not None:
        g = g.reshape(len(g), *image_shape)
    return g.max(axis=3) if g.ndim == 4 else g


def trigger_share(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per map: the share of Σ|∇| on the trigger's pixels (``mask``, (H, W) boolean).

    Compare with ``mask.mean()``, the share a map spread evenly would give. NaN for an all-zero map.
    """
    maps = np.asarray(maps, dtype=np.float64)
    total = maps.sum(axis=(1, 2))
    inside = maps[:, np.asarray(mask, dtype=bool)].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)
