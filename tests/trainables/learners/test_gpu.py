"""Network learners on a CUDA device: deterministic, bf16, channels-last, data on the device and
no waiting for the device per batch. Runs only where CUDA is available (skipped elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def on_gpu(monkeypatch):
    """The learners' rule for the device: the GPU when Ray assigned one (here: as if it had)."""
    monkeypatch.setattr("trainables.learners.torch_learners.ray_resources", lambda: (None, True))


def data(n=2048, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    X = rng.uniform(0, 0.5, size=(n, 32, 32, 3))
    X[np.arange(n), 3 * y] += 0.5
    return X, y


def fit(name, deterministic=True, precision="fp32", **kw):
    from trainables.learners import make_learner

    X, y = data()
    config = {"learner": name, "epochs": 2, "batch_size": 128, "lr": 0.05, **kw}
    config.update(deterministic=deterministic, precision=precision)
    learner = make_learner(config, random_state=3).fit(X, y)
    return learner, learner.predict_proba(X[:512])


@pytest.mark.parametrize("name", ["cnn", "resnet18", "mlp"])
def test_same_seed_same_gpu_identical_metrics(on_gpu, name):
    a, pa = fit(name, augment=name != "mlp")
    b, pb = fit(name, augment=name != "mlp")
    assert a.device_.type == "cuda"
    np.testing.assert_array_equal(pa, pb)
    for p, q in zip(a.model_.parameters(), b.model_.parameters(), strict=True):
        assert torch.equal(p, q)


def test_conv_nets_are_channels_last_on_the_gpu(on_gpu):
    learner, _ = fit("cnn")
    conv = learner.model_.body[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(
    torch.cuda.is_available() and not torch.cuda.is_bf16_supported(), reason="no bfloat16"
)
def test_bf16_trains_to_the_same_task(on_gpu):
    _, p16 = fit("cnn", precision="bf16")
    _, p32 = fit("cnn")
    assert np.mean(p16.argmax(1) == p32.argmax(1)) > 0.9


def test_the_epoch_loop_does_not_wait_for_the_device(on_gpu):
    """Synchronising calls (``.item()``, copies from pageable memory…) counted by torch's sync
    debug mode: the set-up has a few; more epochs add none (at most one an epoch)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
    from gpu_check import count_syncs

    X, y = data()
    one, three = count_syncs(X, y, 1), count_syncs(X, y, 3)
    assert len(three) - len(one) <= 2, three


def test_deterministic_off_lets_cudnn_autotune(on_gpu):
    from trainables.learners.training import determinism

    with determinism(False):
        assert torch.backends.cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    learner, proba = fit("cnn", deterministic=False)
    assert np.isfinite(proba).all()
