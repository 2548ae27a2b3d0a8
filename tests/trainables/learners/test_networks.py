"""Network learners: modules, the estimator interface, seeding, β-weighted batches, augmentation,
and the latent regularisers checked term by term against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.learners import LEARNERS, make_learner
from trainables.learners.networks import (
    MLP,
    LogisticModel,
    SmallCNN,
    SmallImageResNet18,
    dp_compatible,
    has_batchnorm,
)
from trainables.learners.regularisers import (
    Regularisers,
    batch_objective,
    contrastive_term,
    logit_squeeze_term,
    manifold_mixup_term,
    snnl_term,
)
from trainables.learners.torch_learners import TorchLogistic, beta_weights, ray_resources
from trainables.learners.training import augment_batch, images_to_tensor

FAST = dict(epochs=2, batch_size=32, lr=0.05)


def small_digits(digits_data, n=120):
    return digits_data.X_train[:n], digits_data.y_train[:n]


# -- modules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_modules_give_logits_and_split_into_features_and_head(shape):
    torch.manual_seed(0)
    x = torch.rand(4, *shape)
    n_inputs = int(np.prod(shape))
    for model in (SmallCNN(shape[0], 5, width=8), MLP(n_inputs, 5), LogisticModel(n_inputs, 5)):
        z = model(x)
        assert z.shape == (4, 5)
        assert torch.allclose(model.head(model.features(x)), z)


@pytest.mark.slow
def test_small_cnn_has_no_batchnorm_and_resnet_is_fixed_for_opacus():
    from opacus.validators import ModuleValidator

    assert not has_batchnorm(SmallCNN(1, 10))
    assert ModuleValidator.is_valid(SmallCNN(1, 10))
    net = SmallImageResNet18(3, 10)
    assert net.net.conv1.kernel_size == (3, 3) and net.net.conv1.stride == (1, 1)
    assert isinstance(net.net.maxpool, torch.nn.Identity)
    assert has_batchnorm(net) and not ModuleValidator.is_valid(net)
    fixed = dp_compatible(net)
    assert not has_batchnorm(fixed) and ModuleValidator.is_valid(fixed)
    assert fixed(torch.rand(2, 3, 8, 8)).shape == (2, 10)
    # under dp_sgd the learner trains the GroupNorm version through Opacus's per-sample hooks
    X = np.random.default_rng(0).uniform(size=(8, 8, 8))
    y = np.arange(8) % 2
    plain = make_learner({"learner": "resnet18", "epochs": 1, "batch_size": 4}, random_state=0)
    assert has_batchnorm(plain.fit(X, y).model_)
    dp = make_learner({"learner": "resnet18", "epochs": 1, "batch_size": 4}, random_state=0)
    dp.set_params(sampling="poisson", dp_noise=1.0, max_grad_norm=1.0).fit(X, y)
    assert not has_batchnorm(dp.model_) and dp.per_sample_clipping_ and dp.dp_epsilon_ > 0


def test_registry_and_params_of_network_learners():
    assert {"cnn", "mlp", "resnet18", "torch_logistic"} <= set(LEARNERS)
    learner = make_learner(
        {"learner": "cnn", "epochs": 3, "cnn_width": 4, "snnl_weight": 0.5}, random_state=7
    )
    assert (learner.epochs, learner.cnn_width, learner.snnl_weight, learner.random_state) == (
        3,
        4,
        0.5,
        7,
    )
    assert "dp_noise" not in LEARNERS["cnn"].Params.model_fields  # DP is the dp_sgd defence's


# -- the estimator ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cnn", "mlp", "torch_logistic"])
def test_estimator_interface_on_digits(digits_data, name):
    X, y = small_digits(digits_data)
    learner = make_learner({"learner": name, **FAST}, random_state=0).fit(X, y)
    P = learner.predict_proba(digits_data.X_test)
    assert P.shape == (len(digits_data.y_test), 2)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-9)
    d = learner.decision_function(digits_data.X_test)
    assert d.shape == (len(digits_data.y_test),)
    np.testing.assert_array_equal(
        learner.predict(digits_data.X_test), learner.classes_[(d > 0).astype(int)]
    )


def test_labels_are_mapped_to_and_from_the_fitted_classes():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 4, 4))
    y = np.where(X[:, 0, 0] > 0.5, 7, 3)
    learner = TorchLogistic(epochs=30, lr=0.5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(learner.classes_, [3, 7])
    assert set(np.unique(learner.predict(X))) <= {3, 7}
    assert learner.weight_vector().shape == (16,)


def test_seeded_fits_are_identical_and_seeds_differ(digits_data):
    X, y = small_digits(digits_data)
    params = [
        [
            p.detach().clone()
            for p in make_learner({"learner": "cnn", **FAST, "augment": True}, random_state=s)
            .fit(X, y)
            .model_.parameters()
        ]
        for s in (1, 1, 2)
    ]
    assert all(torch.equal(a, b) for a, b in zip(params[0], params[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(params[0], params[2], strict=True))


def test_outside_ray_the_learner_keeps_torch_threads_and_the_cpu():
    assert ray_resources() == (None, False)
    X = np.random.default_rng(0).uniform(size=(20, 8, 8))
    learner = TorchLogistic(epochs=1, random_state=0).fit(X, np.arange(20) % 2)
    assert learner.device_.type == "cpu"


# -- the learning-curve objective ------------------------------------------------------------
def test_beta_weights_are_clean_mean_plus_beta_poison_mean():
    poison = torch.tensor([False, False, False, True])
    w = beta_weights(poison, 0.5, norm=4.0)
    np.testing.assert_allclose(w.numpy(), [1 / 3, 1 / 3, 1 / 3, 0.5], rtol=1e-6)
    # Poisson batches are normalised by the expected batch size: scaled by B / E[B]
    np.testing.assert_allclose(
        beta_weights(poison, 0.5, norm=8.0).numpy(), w.numpy() / 2, rtol=1e-6
    )
    np.testing.assert_allclose(
        beta_weights(torch.tensor([True, True]), 0.2, norm=2.0).numpy(), [0.1, 0.1], rtol=1e-6
    )


def test_fit_beta_zero_ignores_the_poisoned_rows_and_no_poison_equals_fit(digits_data):
    X, y = small_digits(digits_data)
    poison = np.zeros(len(y), dtype=bool)
    poison[::7] = True
    X2, y2 = X.copy(), y.copy()
    X2[poison] = 1.0 - X2[poison]  # whatever the poisons are…
    y2[poison] = 1 - y2[poison]
    a = make_learner({"learner": "cnn", **FAST}, random_state=3).fit_beta(X, y, poison, 0.0)
    b = make_learner({"learner": "cnn", **FAST}, random_state=3).fit_beta(X2, y2, poison, 0.0)
    for p, q in zip(a.model_.parameters(), b.model_.parameters(), strict=True):
        assert torch.equal(p, q)  # …at β = 0 they have no influence
    c = make_learner({"learner": "cnn", **FAST}, random_state=3).fit_beta(X2, y2, poison, 0.5)
    assert not all(
        torch.equal(p, q) for p, q in zip(b.model_.parameters(), c.model_.parameters(), strict=True)
    )
    none = np.zeros(len(y), dtype=bool)
    d = make_learner({"learner": "cnn", **FAST}, random_state=3).fit_beta(X, y, none, 0.3)
    e = make_learner({"learner": "cnn", **FAST}, random_state=3).fit(X, y)
    for p, q in zip(d.model_.parameters(), e.model_.parameters(), strict=True):
        torch.testing.assert_close(p, q)


# -- augmentation ----------------------------------------------------------------------------
def test_augment_is_a_padded_crop_possibly_flipped():
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8) + 1
    out = augment_batch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):
        windows = [
            w
            for oy in range(3)
            for ox in range(3)
            for w in (
                padded[i, :, oy : oy + 8, ox : ox + 8],
                padded[i, :, oy : oy + 8, ox : ox + 8].flip(-1),
            )
        ]
        assert any(torch.equal(out[i], w) for w in windows)
    again = augment_batch(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert images_to_tensor(np.zeros((3, 5, 6, 3))).shape == (3, 3, 5, 6)


# -- regularisers, by hand ------------------------------------------------------------------
H = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
Y = np.array([0, 0, 1, 1])
W_OUT = np.array([[1.0, -1.0], [0.5, 2.0]])
B_OUT = np.array([0.1, -0.2])


def tiny_model() -> LogisticModel:
    """Logistic model on 1×1×2 'images': h = x, z = W h + b with hand-set W, b."""
    model = LogisticModel(2, 2).double()
    with torch.no_grad():
        model.out.weight.copy_(torch.tensor(W_OUT))
        model.out.bias.copy_(torch.tensor(B_OUT))
    return model.requires_grad_(False)


def ce(z, y):
    z = z - z.max()
    return -(z[y] - np.log(np.exp(z).sum()))


def hand_terms(w, margin=1.5, T=0.7, gamma=0.3, perm=(2, 0, 3, 1)):
    Z = H @ W_OUT.T + B_OUT
    n = len(Y)
    squeeze = sum(w[i] * np.linalg.norm(Z[i]) for i in range(n))
    contr = 0.0
    for i in range(n):
        num = den = 0.0
        for j in range(n):
            if j == i:
                continue
            d = np.linalg.norm(H[i] - H[j])
            pair = d**2 if Y[i] == Y[j] else max(0.0, margin - d) ** 2
            num, den = num + w[j] * pair, den + w[j]
        contr += w[i] * num / den
    snnl = 0.0
    for i in range(n):
        k = [w[j] * np.exp(-np.sum((H[i] - H[j]) ** 2) / T) for j in range(n)]
        same = sum(k[j] for j in range(n) if j != i and Y[j] == Y[i])
        allk = sum(k[j] for j in range(n) if j != i)
        if same > 0:
            snnl += w[i] * -np.log(same / allk)
    v = np.array([w[i] * w[perm[i]] for i in range(n)])
    mix = 0.0
    for i in range(n):
        zt = (gamma * H[i] + (1 - gamma) * H[perm[i]]) @ W_OUT.T + B_OUT
        mix += v[i] * (gamma * ce(zt, Y[i]) + (1 - gamma) * ce(zt, Y[perm[i]]))
    mix = w.sum() * mix / v.sum()
    return squeeze, contr, snnl, mix


@pytest.mark.parametrize("w", [np.full(4, 0.25), np.array([0.5, 0.2, 0.3, 0.0])])
def test_each_regulariser_term_matches_the_hand_computation(w):
    model = tiny_model()
    h, y, wt = torch.tensor(H), torch.tensor(Y), torch.tensor(w)
    z = model.head(h)
    squeeze, contr, snnl, mix = hand_terms(w)
    assert float(logit_squeeze_term(z, wt)) == pytest.approx(squeeze, rel=1e-12)
    assert float(contrastive_term(h, y, wt, 1.5)) == pytest.approx(contr, rel=1e-9)
    assert float(snnl_term(h, y, wt, 0.7)) == pytest.approx(snnl, rel=1e-9)
    perm = torch.tensor([2, 0, 3, 1])
    assert float(manifold_mixup_term(h, y, wt, model.head, 0.3, perm)) == pytest.approx(
        mix, rel=1e-9
    )


def test_each_regulariser_changes_the_objective_by_its_weighted_term():
    model = tiny_model()
    x = torch.tensor(H).reshape(4, 1, 1, 2)
    y, w = torch.tensor(Y), torch.full((4,), 0.25, dtype=torch.float64)
    base = float(batch_objective(model, x, y, w, Regularisers()))
    Z = H @ W_OUT.T + B_OUT
    assert base == pytest.approx(np.mean([ce(Z[i], Y[i]) for i in range(4)]), rel=1e-12)
    squeeze, contr, snnl, _ = hand_terms(w.numpy())
    cases = [
        (Regularisers(logit_squeeze=0.3), 0.3 * squeeze),
        (Regularisers(contrastive=2.0, contrastive_margin=1.5), 2.0 * contr),
        (Regularisers(snnl=-0.5, snnl_temperature=0.7), -0.5 * snnl),
    ]
    for reg, extra in cases:
        assert float(batch_objective(model, x, y, w, reg)) - base == pytest.approx(extra, rel=1e-9)
    # mixup draws γ ~ U(0, 1) then a random pairing from the training generator
    g = torch.Generator().manual_seed(5)
    gamma, perm = float(torch.rand(1, generator=g)), torch.randperm(4, generator=g)
    expected = 0.8 * hand_terms(w.numpy(), gamma=gamma, perm=perm.tolist())[3]
    got = float(
        batch_objective(
            model, x, y, w, Regularisers(manifold_mixup=0.8), torch.Generator().manual_seed(5)
        )
    )
    assert got - base == pytest.approx(expected, rel=1e-9)


def test_a_zero_weight_sample_takes_no_part_in_the_coupled_terms():
    h, y = torch.tensor(H), torch.tensor(Y)
    w = torch.tensor([0.5, 0.2, 0.3, 0.0])
    keep = [0, 1, 2]
    hk, yk, wk = h[keep], y[keep], w[keep]
    assert float(contrastive_term(h, y, w, 1.5)) == pytest.approx(
        float(contrastive_term(hk, yk, wk, 1.5))
    )
    assert float(snnl_term(h, y, w, 0.7)) == pytest.approx(float(snnl_term(hk, yk, wk, 0.7)))
    hg = h.clone().requires_grad_(True)
    snnl_term(hg, y, w, 0.7).backward()
    assert torch.isfinite(hg.grad).all()
