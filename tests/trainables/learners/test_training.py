"""The training loop: DP-SGD's accounting (q, steps, expected batch size), determinism switches,
bf16 autocast, the epoch loss, and the device-side weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.learners.networks import AveragePoolTo
from trainables.learners.torch_learners import CNN, TorchLogistic, beta_weights
from trainables.learners.training import (
    TrainConfig,
    Trainer,
    determinism,
    poisson_rate,
    predict_logits,
)


def rdp_epsilon(q: float, steps: int, sigma: float = 1.0, delta: float = 1e-5) -> float:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(sigma, q, steps)]
    return float(accountant.get_epsilon(delta))


# -- DP-SGD accounting -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, b", [(5942, 64), (50000, 128), (50000, 64), (6272, 64), (1000, 10), (97, 1)]
)
def test_poisson_epochs_draw_k_steps_with_rate_one_over_k(n, b):
    """k = ⌈n/b⌉ steps an epoch at q = 1/k — also where int(1/(1/k)) is k − 1 (k = 93, 391,
    782) — and the expected batch size ⌊n/k⌋ also where int(n·(1/k)) is one less (n = 6272)."""
    q, steps, expected = poisson_rate(n, b)
    k = -(-n // b)
    assert (q, steps, expected) == (1.0 / k, k, max(1, n // k))
    trainer = Trainer(torch.nn.Linear(1, 1), TrainConfig(1, b, 0.1, sampling="poisson"), "cpu")
    trainer.device = torch.device("cpu")
    batches = list(trainer.batches(n))
    assert len(batches) == k
    # the plain baseline divides every batch by the expected batch size
    assert {norm for _, norm in batches} == {float(expected)}


def test_reported_epsilon_is_the_accountants_for_the_steps_really_run():
    """n = 5942, b = 64 (k = 93, where int(1/(1/93)) = 92): 2 epochs at σ = 1 run 186 steps at
    q = 1/93. The loop used to run 184 and tell the accountant q = 1/92: ε 1.38823 instead of
    the accountant's value for what was drawn."""
    n, b = 5942, 64
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(n, 2, 2))
    y = (X[:, 0, 0] > 0.5).astype(int)
    learner = TorchLogistic(
        epochs=2,
        batch_size=b,
        lr=0.1,
        sampling="poisson",
        dp_noise=1.0,
        max_grad_norm=1.0,
        random_state=0,
    ).fit(X, y)
    assert learner.train_steps_ == 2 * 93
    expected = rdp_epsilon(1 / 93, 186)
    assert learner.dp_epsilon_ == pytest.approx(expected, rel=1e-12)
    assert learner.dp_epsilon_ == pytest.approx(1.38223, abs=5e-6)
    assert abs(learner.dp_epsilon_ - 1.38823) > 1e-3  # what was reported before
    # the numbers of the defect report: q = 1/92 over 184 steps, and q = 1/93 over 184 steps
    assert rdp_epsilon(1 / 92, 184) == pytest.approx(1.38823, abs=5e-6)
    assert rdp_epsilon(1 / 93, 184) == pytest.approx(1.37959, abs=5e-6)


@pytest.mark.parametrize("n, b", [(5942, 64), (300, 7)])
def test_dp_optimiser_and_baseline_divide_by_the_same_expected_batch_size(n, b):
    cfg = TrainConfig(1, b, 0.1, sampling="poisson", dp_noise=1.0, max_grad_norm=1.0)
    trainer = Trainer(torch.nn.Linear(3, 2), cfg, torch.device("cpu"))
    opt = trainer.build_optimizer(n)
    _, _, expected = poisson_rate(n, b)
    assert opt.expected_batch_size == expected
    assert trainer.sample_rate == 1.0 / -(-n // b)
    trainer.gsm.cleanup()


# -- determinism -------------------------------------------------------------------------------
def test_determinism_sets_and_restores_torchs_switches(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
    )
    with determinism(True):
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled()
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    with determinism(False):
        assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
        assert not torch.are_deterministic_algorithms_enabled()
    after = (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
    )
    assert after == before


def _fit_and_measure(data, **kw):
    learner = CNN(epochs=2, batch_size=32, lr=0.05, cnn_width=4, random_state=5, **kw)
    learner.fit(data.X_train, data.y_train)
    proba = learner.predict_proba(data.X_test)
    params = [p.detach().clone() for p in learner.model_.parameters()]
    return proba, params, learner


def test_two_deterministic_runs_give_identical_metrics_and_weights(digits_data):
    a, pa, la = _fit_and_measure(digits_data, augment=True, deterministic=True)
    b, pb, _ = _fit_and_measure(digits_data, augment=True, deterministic=True)
    np.testing.assert_array_equal(a, b)
    assert all(torch.equal(p, q) for p, q in zip(pa, pb, strict=True))
    assert la.train_loss_ > 0 and np.isfinite(la.train_loss_)
    # deterministic mode only pins algorithms: off, the CPU gives the same model here too
    c, _, _ = _fit_and_measure(digits_data, augment=True, deterministic=False)
    np.testing.assert_allclose(a, c, atol=1e-5)


# -- precision -------------------------------------------------------------------------------
def test_bf16_autocast_trains_and_predicts_in_fp32_outputs(digits_data):
    proba, _, learner = _fit_and_measure(digits_data, precision="bf16")
    assert proba.dtype == np.float64 and np.isfinite(proba).all()
    fp32, _, _ = _fit_and_measure(digits_data)
    assert not np.array_equal(proba, fp32)  # bf16 rounding shows…
    assert np.mean(proba.argmax(1) == fp32.argmax(1)) > 0.9  # …but it learns the same task
    model = learner.model_
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    logits = predict_logits(model, torch.rand(3, 1, 8, 8), precision="bf16")
    assert logits.dtype == torch.float32


def test_bf16_with_per_sample_clipping_is_refused(digits_data):
    learner = TorchLogistic(sampling="poisson", dp_noise=1.0, max_grad_norm=1.0, precision="bf16")
    with pytest.raises(ValueError, match="precision bf16 cannot train with per-sample clipping"):
        learner.fit(digits_data.X_train[:20], digits_data.y_train[:20])


# -- pieces ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8, 8), (14, 14), (16, 16), (7, 9), (28, 28)])
def test_average_pool_matches_adaptive_average_pooling(shape):
    x = torch.randn(2, 3, *shape, dtype=torch.float64, requires_grad=True)
    ours = AveragePoolTo(4)(x)
    torch.testing.assert_close(ours, torch.nn.functional.adaptive_avg_pool2d(x, 4))
    (g,) = torch.autograd.grad(ours.sum(), x)
    (ref,) = torch.autograd.grad(torch.nn.functional.adaptive_avg_pool2d(x, 4).sum(), x)
    torch.testing.assert_close(g, ref)


def test_beta_weights_read_nothing_back_and_keep_the_device():
    poison = torch.tensor([True, True, True, True])
    w = beta_weights(poison, 0.0, norm=4.0)
    assert w.device == poison.device and torch.equal(w, torch.zeros(4))
