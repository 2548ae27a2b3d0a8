"""Clean-label surrogates: one per (clean data, surrogate, seed) and node — from this process, the
node's cache folder, or trained under a lock — and the same model whichever way it came."""

from __future__ import annotations

import fcntl
import threading

import numpy as np
import pytest

from trainables.attacks import surrogate_cache as cache
from trainables.attacks.clean_label import CleanLabelParams, CnnSurrogate, LogisticSurrogate
from trainables.attacks.poisoning import CleanLabel
from trainables.attacks.triggers import PatchTrigger
from trainables.trial import seed_sequence


@pytest.fixture
def cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    cache._process.clear()
    yield tmp_path / "cache" / "surrogates"
    cache._process.clear()


def small(digits_data, n=80):
    return digits_data.X_train[:n], digits_data.y_train[:n]


def test_the_seed_comes_from_the_seed_sequence_not_the_draws():
    a, b = seed_sequence(3, "poison"), seed_sequence(3, "poison")
    b.integers(10, size=17)  # a poisoning at another rate draws more rows first
    assert cache.surrogate_seed(a) == cache.surrogate_seed(b)
    assert cache.surrogate_seed(seed_sequence(4, "poison")) != cache.surrogate_seed(a)


@pytest.mark.parametrize(
    "cls", [LogisticSurrogate, pytest.param(CnnSurrogate, marks=pytest.mark.slow)]
)
def test_trained_once_then_from_the_process_then_from_disk_and_identical(
    cls, digits_data, cache_folder
):
    X, y = small(digits_data)
    first, source = cache.fit_surrogate(cls, X, y, 2, seed=7)
    assert source == "trained" and len(list(cache_folder.glob("*.npz"))) == 1
    again, source = cache.fit_surrogate(cls, X, y, 2, seed=7)
    assert source == "process" and again is first
    cache._process.clear()  # another worker process of the node
    loaded, source = cache.fit_surrogate(cls, X, y, 2, seed=7)
    assert source == "disk" and loaded is not first
    fresh = cls().fit(X, y, 2, np.random.default_rng(7))  # what training without a cache gives
    for s in (loaded, fresh):
        np.testing.assert_array_equal(s.loss(X, y), first.loss(X, y))
        np.testing.assert_array_equal(s.input_grad(X[:5], y[:5]), first.input_grad(X[:5], y[:5]))
    # another seed, other data or another number of classes is another surrogate
    assert cache.fit_surrogate(cls, X, y, 2, seed=8)[1] == "trained"
    assert cache.fit_surrogate(cls, X[:-1], y[:-1], 2, seed=7)[1] == "trained"


def test_a_corrupt_cache_file_is_trained_again_and_replaced(digits_data, cache_folder):
    X, y = small(digits_data)
    cache.fit_surrogate(LogisticSurrogate, X, y, 2, seed=1)
    (path,) = cache_folder.glob("*.npz")
    path.write_bytes(b"not an npz file")
    cache._process.clear()
    _, source = cache.fit_surrogate(LogisticSurrogate, X, y, 2, seed=1)
    assert source == "trained"
    assert cache._load(LogisticSurrogate, path) is not None
    assert not list(cache_folder.glob(".tmp-*"))


def test_the_disk_cache_can_be_turned_off(digits_data, tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    cache._process.clear()
    X, y = small(digits_data)
    assert cache.cache_dir() is None
    assert cache.fit_surrogate(LogisticSurrogate, X, y, 2, seed=1)[1] == "trained"
    assert cache.fit_surrogate(LogisticSurrogate, X, y, 2, seed=1)[1] == "process"
    cache._process.clear()


def test_a_second_worker_waits_for_the_first_and_reads_its_file(digits_data, cache_folder):
    X, y = small(digits_data)
    key = cache.surrogate_key("logistic", LogisticSurrogate.settings(), 5, X, y, 2)
    cache_folder.mkdir(parents=True)
    with open(cache_folder / f".{key}.lock", "a+") as holder:  # the first worker, training
        fcntl.flock(holder, fcntl.LOCK_EX)
        got = {}
        waiter = threading.Thread(
            target=lambda: got.update(r=cache.fit_surrogate(LogisticSurrogate, X, y, 2, seed=5))
        )
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive()  # it waits for the lock…
        trained = LogisticSurrogate().fit(X, y, 2, np.random.default_rng(5))
        cache._save(cache_folder / f"{key}.npz", trained.state())
    # …and once the first is done, reads its surrogate instead of training
    waiter.join(timeout=30)
    surrogate, source = got["r"]
    assert source == "disk"
    np.testing.assert_array_equal(surrogate.W_, trained.W_)


def test_every_attack_setting_of_a_seed_shares_one_surrogate(
    digits_data, cache_folder, monkeypatch
):
    fits = []
    original = LogisticSurrogate.fit

    def counting(self, *args, **kwargs):
        fits.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LogisticSurrogate, "fit", counting)
    X, y = digits_data.X_train, digits_data.y_train
    trigger = PatchTrigger(PatchTrigger.Params(trigger_size=2)).fit(X, np.random.default_rng(0))
    for rate in (0.1, 0.3):
        for eps in (8.0, 16.0):
            params = CleanLabelParams(poison_rate=rate, hardening="pgd_linf", epsilon=eps)
            out = CleanLabel(params).poison(X, y, trigger, 1, 2, seed_sequence(0, "poison"))
            assert out.info["surrogate_loss_hardened"] >= out.info["surrogate_loss_clean"]
    assert len(fits) == 1
    CleanLabel(CleanLabelParams(poison_rate=0.1)).poison(
        X, y, trigger, 1, 2, seed_sequence(1, "poison")
    )
    assert len(fits) == 2  # another seed, another surrogate
