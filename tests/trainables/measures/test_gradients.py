"""Input-gradient maps: exact gradients against central finite differences of the decision function."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.learners import make_learner
from trainables.measures.gradients import gradient_map, input_gradient, trigger_share

#: float64 learners: relative error of the gradient against central differences
RTOL = 1e-4
STEP = 1e-5


def central_differences(f, X: np.ndarray, h: float = STEP) -> np.ndarray:
    """∂f/∂x per input by central differences, f mapping (n, …) inputs to (n,) values."""
    flat = X.reshape(len(X), -1)
    out = np.zeros_like(flat)
    for j in range(flat.shape[1]):
        up, down = flat.copy(), flat.copy()
        up[:, j] += h
        down[:, j] -= h
        out[:, j] = (f(up.reshape(X.shape)) - f(down.reshape(X.shape))) / (2 * h)
    return out.reshape(X.shape)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def toy_images(shape, n=80, n_classes=2, seed=0):
    """Random images whose class is the sign of a fixed random projection (learnable)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, *shape))
    proj = rng.normal(size=(n_classes, int(np.prod(shape))))
    y = ((X.reshape(n, -1) - 0.5) @ proj.T).argmax(axis=1)
    return X, y


@pytest.mark.parametrize(
    "config",
    [
        {"learner": "ridge", "C": 1.0},
        {"learner": "logistic", "C": 1.0},
        {"learner": "svm_linear", "C": 1.0},
        {"learner": "svm_rbf", "C": 10.0, "gamma": 0.1},
        {"learner": "svm_rbf", "C": 0.1, "gamma": 1.0},
    ],
)
@pytest.mark.parametrize("shape", [(6, 6), (4, 4, 3)])
def test_binary_gradients_match_finite_differences(config, shape):
    X, y = toy_images(shape)
    learner = make_learner(config, random_state=0).fit(X, y)
    probe = np.random.default_rng(1).uniform(size=(5, *shape))  # random inputs, not training rows
    g = input_gradient(learner, probe)
    assert g.shape == probe.shape
    fd = central_differences(learner.decision_function, probe)
    assert relative_error(g, fd) <= RTOL


@pytest.mark.parametrize("name", ["ridge", "logistic"])
def test_multiclass_linear_gradient_is_the_target_class_score(name):
    X, y = toy_images((5, 5), n=120, n_classes=3)
    learner = make_learner({"learner": name, "C": 1.0}).fit(X, y)
    probe = np.random.default_rng(2).uniform(size=(4, 5, 5))
    for target in (0, 2):
        g = input_gradient(learner, probe, target=target)
        fd = central_differences(lambda Z, t=target: learner.decision_function(Z)[:, t], probe)
        assert relative_error(g, fd) <= RTOL
    with pytest.raises(ValueError, match="target must be one of the model's classes"):
        input_gradient(learner, probe, target=7)


def test_multiclass_svm_is_refused():
    X, y = toy_images((4, 4), n=90, n_classes=3)
    learner = make_learner({"learner": "svm_rbf", "C": 1.0, "gamma": 0.1}).fit(X, y)
    with pytest.raises(ValueError, match="one-vs-one votes"):
        input_gradient(learner, X[:2], target=0)


def _double_scores(learner, X, target=None):
    """The network's decision in float64 (the model is cast to double by the test)."""
    import torch

    x = X[:, None] if X.ndim == 3 else np.transpose(X, (0, 3, 1, 2))  # (n, C, H, W), float64
    with torch.no_grad():
        z = learner.model_(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z[:, target]


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, shape, n_classes",
    [
        ({"learner": "cnn", "cnn_width": 4, "hidden_units": 8}, (8, 8), 2),
        ({"learner": "mlp", "hidden_units": 16}, (4, 4, 3), 3),
    ],
)
def test_network_gradients_match_finite_differences_in_float64(config, shape, n_classes):
    X, y = toy_images(shape, n=64, n_classes=n_classes)
    learner = make_learner({**config, "epochs": 2, "batch_size": 16}, random_state=0).fit(X, y)
    probe = np.random.default_rng(3).uniform(size=(3, *shape))
    g32 = input_gradient(learner, probe, target=1)
    learner.model_.double()  # the same network in float64, so differences are meaningful
    g = input_gradient(learner, probe, target=1)
    fd = central_differences(lambda Z: _double_scores(learner, Z, 1), probe)
    assert g.shape == probe.shape
    assert relative_error(g, fd) <= RTOL
    assert relative_error(g32, g) <= 1e-3  # the float32 map is the same map


def test_map_takes_the_maximum_absolute_value_over_channels():
    g = np.zeros((1, 2, 2, 3))
    g[0, 0, 0] = [0.1, -0.7, 0.3]
    g[0, 1, 1] = [-0.2, 0.0, 0.1]
    m = gradient_map(g)
    assert m.shape == (1, 2, 2)
    np.testing.assert_allclose(m[0], [[0.7, 0.0], [0.0, 0.2]])
    flat = gradient_map(np.array([[-1.0, 2.0, 0.0, 3.0]]), image_shape=(2, 2))
    np.testing.assert_allclose(flat[0], [[1.0, 2.0], [0.0, 3.0]])
    share = trigger_share(m, np.array([[True, False], [False, False]]))
    np.testing.assert_allclose(share, [0.7 / 0.9])
