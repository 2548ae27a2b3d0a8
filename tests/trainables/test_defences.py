"""Defences: DP-SGD through Opacus, clean fine-tuning, trusted-subset filtering; spec checks; and
the defence presets' smoke versions on a real Ray runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backdoor_sweep.errors import SweepError
from sweep.spec import PRESETS_DIR, load_spec, parse_spec, with_overrides
from trainables.attacks.poisoning import DirtyLabel, Poisoned
from trainables.attacks.triggers import PatchTrigger
from trainables.defences import (
    DPSGD,
    BackdoorTest,
    CleanFinetune,
    Filter,
    draw_trusted,
    own_label_probability,
)
from trainables.learners import Logistic, SVMLinear, make_learner
from trainables.learners.torch_learners import CNN, TorchLogistic


def rng(seed=0):
    return np.random.default_rng(seed)


# -- DP-SGD ----------------------------------------------------------------------------------
def test_opacus_clips_every_per_sample_gradient(digits_data):
    """One full-batch step (q = 1) with σ = 0 moves the weights by exactly −lr·mean(clip(gᵢ)),
    with gᵢ each sample's own gradient — computed here by hand for softmax regression."""
    X, y = digits_data.X_train[:40], digits_data.y_train[:40]
    kw = dict(epochs=1, batch_size=40, momentum=0.0, random_state=4)
    init = TorchLogistic(lr=0.0, **kw).fit(X, y).model_.out  # lr 0: the seeded initial weights
    W0, b0 = init.weight.detach().double().numpy(), init.bias.detach().double().numpy()
    c, lr = 1e-3, 1.0
    dp = TorchLogistic(lr=lr, sampling="poisson", dp_noise=0.0, max_grad_norm=c, **kw).fit(X, y)
    assert dp.per_sample_clipping_
    Xf = X.reshape(len(X), -1)
    Z = Xf @ W0.T + b0
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    R = P - np.eye(2)[y]  # ∂ℓᵢ/∂zᵢ
    gW = R[:, :, None] * Xf[:, None, :]
    norms = np.sqrt((gW**2).sum((1, 2)) + (R**2).sum(1))
    assert (norms > c).all()  # every sample is clipped…
    scale = c / (norms + 1e-6)
    W1 = W0 - lr * (scale[:, None, None] * gW).mean(0)
    b1 = b0 - lr * (scale[:, None] * R).mean(0)
    np.testing.assert_allclose(
        dp.model_.out.weight.detach().double().numpy(), W1, rtol=1e-4, atol=1e-8
    )
    np.testing.assert_allclose(
        dp.model_.out.bias.detach().double().numpy(), b1, rtol=1e-4, atol=1e-8
    )
    # …whereas the plain step (same batch) is far larger than lr·c
    plain = TorchLogistic(lr=lr, sampling="poisson", **kw).fit(X, y)
    assert np.linalg.norm(plain.model_.out.weight.detach().numpy() - W0) > 10 * lr * c
    assert not plain.per_sample_clipping_


def test_noise_free_unclipped_opacus_equals_the_plain_sgd_baseline(digits_data):
    X, y = digits_data.X_train[:96], digits_data.y_train[:96]
    kw = dict(
        epochs=2,
        batch_size=16,
        lr=0.05,
        momentum=0.9,
        weight_decay=1e-3,
        cnn_width=4,
        hidden_units=16,
        sampling="poisson",
        dp_noise=0.0,
        random_state=11,
    )
    baseline = CNN(max_grad_norm=None, **kw).fit(X, y)
    opacus = CNN(max_grad_norm=1e6, **kw).fit(X, y)  # clipping at 1e6 never bites
    assert opacus.per_sample_clipping_ and not baseline.per_sample_clipping_
    for p, q in zip(baseline.model_.parameters(), opacus.model_.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    clipped = CNN(max_grad_norm=0.01, **kw).fit(X, y)
    assert not all(
        torch.allclose(p, q, atol=1e-3)
        for p, q in zip(baseline.model_.parameters(), clipped.model_.parameters(), strict=True)
    )


def poisoned_digits(data, rate=0.2, seed=0) -> Poisoned:
    trig = PatchTrigger(PatchTrigger.Params(trigger_size=2)).fit(data.X_train, rng(seed))
    return DirtyLabel(DirtyLabel.Params(poison_rate=rate)).poison(
        data.X_train, data.y_train, trig, 1, data.n_classes, rng(seed + 1)
    )


def test_epsilon_is_finite_and_falls_as_noise_grows(digits_data):
    poisoned = poisoned_digits(digits_data)
    eps = {}
    for sigma, norm in [(0.0, None), (0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (2.0, 1.0)]:
        learner = make_learner({"learner": "torch_logistic", "epochs": 3}, random_state=0)
        defence = DPSGD(DPSGD.Params(dp_noise=sigma, max_grad_norm=norm, dp_delta=1e-5))
        eps[(sigma, norm)] = defence.train(learner, poisoned, digits_data, rng())["dp_epsilon"]
    assert eps[(0.0, None)] is None and eps[(0.0, 1.0)] is None  # baseline; clipping only
    finite = [eps[(s, 1.0)] for s in (0.5, 1.0, 2.0)]
    assert all(np.isfinite(e) and e > 0 for e in finite)
    assert finite[0] > finite[1] > finite[2]


def test_dp_sgd_refuses_what_it_cannot_run(digits_data):
    poisoned = poisoned_digits(digits_data)
    with pytest.raises(SweepError, match="learner"):
        DPSGD(DPSGD.Params()).train(SVMLinear(), poisoned, digits_data, rng())
    with pytest.raises(SweepError, match="max_grad_norm"):
        DPSGD(DPSGD.Params(dp_noise=1.0, max_grad_norm=None)).train(
            TorchLogistic(), poisoned, digits_data, rng()
        )
    with pytest.raises(SweepError, match="snnl"):
        DPSGD(DPSGD.Params()).train(TorchLogistic(snnl_weight=1.0), poisoned, digits_data, rng())


def spec_dict(**changes) -> dict:
    spec = {
        "name": "t",
        "dataset": {"name": "digits", "classes": [7, 1]},
        "learner": {"name": "cnn", "epochs": 1},
        "attack": {"trigger": "patch", "poisoning": "dirty_label", "target": 1},
        "grid": {"poison_rate": [0.1]},
    }
    for key, value in changes.items():
        spec[key] = value
    return spec


def test_spec_checks_name_the_field():
    parse_spec(spec_dict(defence={"name": "dp_sgd", "dp_noise": 0.5}, grid={"dp_noise": [0, 1]}))
    parse_spec(spec_dict(defence={"name": "dp_sgd", "dp_noise": 0, "max_grad_norm": None}))
    with pytest.raises(
        SweepError, match=r"^learner\.name must be a network learner .*got 'svm_rbf'"
    ):
        parse_spec(spec_dict(learner={"name": "svm_rbf"}, defence={"name": "dp_sgd"}))
    with pytest.raises(SweepError, match=r"^grid\.snnl_weight must be 0 with defence dp_sgd"):
        parse_spec(spec_dict(defence={"name": "dp_sgd"}, grid={"snnl_weight": [0, 1]}))
    with pytest.raises(
        SweepError, match=r"^defence\.max_grad_norm must be a positive number when dp_noise > 0"
    ):
        parse_spec(spec_dict(defence={"name": "dp_sgd", "dp_noise": 1, "max_grad_norm": None}))
    with pytest.raises(
        SweepError, match=r"^learner\.name must be a network learner .*clean_finetune"
    ):
        parse_spec(spec_dict(learner={"name": "logistic"}, defence={"name": "clean_finetune"}))
    with pytest.raises(SweepError, match="dp_noise is not a parameter|dp_noise is not read"):
        parse_spec(spec_dict(learner={"name": "cnn", "dp_noise": 1.0}))  # one way only: the defence
    parse_spec(
        spec_dict(
            learner={"name": "logistic"},
            defence={"name": "filter"},
            grid={"filter_retrain": [False, True]},
        )
    )


# -- clean fine-tuning -----------------------------------------------------------------------
class SpyLogistic(TorchLogistic):
    """Records what the clean fine-tuning defence hands to each training stage."""

    def fit_until_plateau(self, X, y, X_val, y_val, **kw):
        self.plateau_seen_ = (np.array(X), np.array(X_val))
        return super().fit_until_plateau(X, y, X_val, y_val, **kw)

    def fine_tune(self, X, y, epochs, lr=None):
        self.finetune_seen_ = np.array(X)
        self.before_finetune_ = [p.detach().clone() for p in self.model_.parameters()]
        return super().fine_tune(X, y, epochs, lr)


def test_clean_finetune_uses_only_the_clean_set(digits_data):
    poisoned = poisoned_digits(digits_data, rate=0.2)
    n = len(poisoned.y)
    test = BackdoorTest(digits_data.X_test, digits_data.y_test, digits_data.X_test, 1)
    learner = SpyLogistic(epochs=1, lr=0.1, random_state=0)
    defence = CleanFinetune(
        CleanFinetune.Params(finetune_epochs=3, finetune_patience=2, finetune_max_epochs=30)
    )
    info = defence.train(learner, poisoned, digits_data, rng(3), test)
    s = defence.splits_
    poison_set = np.concatenate([s["poison_train"], s["poison_val"]])
    clean_set = np.concatenate([s["clean_train"], s["clean_val"]])
    assert len(np.intersect1d(poison_set, clean_set)) == 0
    assert not poisoned.is_poison[clean_set].any()  # poisons never enter the trusted set
    assert (
        poisoned.is_poison[poison_set].sum()
        + poisoned.is_poison[np.setdiff1d(np.arange(n), poison_set)].sum()
        == poisoned.n_poison
    )
    rest = np.setdiff1d(np.arange(n), poison_set)  # the 1/5 drawn for the clean-set…
    assert len(rest) == round(0.2 * n)
    assert set(clean_set) == set(rest[~poisoned.is_poison[rest]])  # …minus its poisoned rows
    # the fine-tune saw exactly the clean-set's training rows, the first stage the poison-set's
    np.testing.assert_array_equal(learner.finetune_seen_, poisoned.X[s["clean_train"]])
    np.testing.assert_array_equal(learner.plateau_seen_[0], poisoned.X[s["poison_train"]])
    np.testing.assert_array_equal(learner.plateau_seen_[1], poisoned.X[s["poison_val"]])
    assert (info["n_clean_set"], info["n_poison_set"]) == (len(clean_set), len(poison_set))
    for key in ("asr_before_finetune", "clean_acc_before_finetune", "finetune_val_acc"):
        assert 0 <= info[key] <= 1
    assert 1 <= info["epochs_before_finetune"] <= 30


def test_fine_tune_continues_from_the_trained_model(digits_data):
    poisoned = poisoned_digits(digits_data)
    params = CleanFinetune.Params(finetune_epochs=2, finetune_lr=1e-12, finetune_max_epochs=5)
    learner = SpyLogistic(epochs=1, random_state=0)
    CleanFinetune(params).train(learner, poisoned, digits_data, rng(), None)
    for before, after in zip(learner.before_finetune_, learner.model_.parameters(), strict=True):
        torch.testing.assert_close(before, after, rtol=0, atol=1e-8)  # lr ≈ 0: no re-initialisation
    learner2 = SpyLogistic(epochs=1, random_state=0)
    CleanFinetune(CleanFinetune.Params(finetune_epochs=2, finetune_max_epochs=5)).train(
        learner2, poisoned, digits_data, rng(), None
    )
    torch.testing.assert_close(learner.before_finetune_[0], learner2.before_finetune_[0])
    assert not torch.allclose(learner2.before_finetune_[0], learner2.model_.out.weight)


def test_early_stopping_keeps_the_best_epoch(digits_data):
    X, y = digits_data.X_train, digits_data.y_train
    learner = TorchLogistic(lr=0.01, random_state=0).fit_until_plateau(
        X[:150], y[:150], X[150:], y[150:], patience=3, max_epochs=60
    )
    assert learner.epochs_trained_ == learner.best_epoch_ + 3 < 60
    assert float(np.mean(learner.predict(X[150:]) == y[150:])) == pytest.approx(
        learner.best_val_acc_
    )


# -- filtering -------------------------------------------------------------------------------
def blobs_with_flipped_labels(n=200, n_flip=10, seed=0) -> Poisoned:
    r = rng(seed)
    y = np.arange(n) % 2
    X = r.normal(size=(n, 1, 2)) + np.where(y == 1, 3.0, -3.0)[:, None, None]
    poison = np.zeros(n, dtype=bool)
    poison[r.choice(n, n_flip, replace=False)] = True
    y_obs = np.where(poison, 1 - y, y)
    return Poisoned(X, y_obs, poison)


@pytest.mark.parametrize("name", ["logistic", "svm_linear", "torch_logistic"])
def test_filter_ranks_mislabelled_points_first(name):
    poisoned = blobs_with_flipped_labels()
    learner = make_learner({"learner": name, "epochs": 50, "lr": 0.1}, random_state=0)
    defence = Filter(Filter.Params(filter_trusted_fraction=0.1))
    info = defence.train(learner, poisoned, None, rng())
    assert info["filter_recall"] == 1.0 and info["filter_n_flagged"] == poisoned.n_poison
    assert set(defence.flagged_) == set(np.flatnonzero(poisoned.is_poison))
    assert not poisoned.is_poison[defence.trusted_].any()
    assert set(np.unique(poisoned.y[defence.trusted_])) == {0, 1}


def test_filter_retrain_drops_the_flagged_rows():
    poisoned = blobs_with_flipped_labels()
    defence = Filter(Filter.Params(filter_fraction=0.1, filter_retrain=True))
    learner = Logistic(random_state=0)
    info = defence.train(learner, poisoned, None, rng())
    assert info["filter_n_flagged"] == 20 and info["filter_precision"] == pytest.approx(0.5)
    keep = np.setdiff1d(np.arange(200), defence.flagged_)
    fresh = Logistic(random_state=0).fit(poisoned.X[keep], poisoned.y[keep])
    np.testing.assert_allclose(learner.model_.coef_, fresh.model_.coef_)
    clean = Poisoned(poisoned.X, poisoned.y, np.zeros(200, dtype=bool))
    assert Filter(Filter.Params()).train(Logistic(), clean, None, rng())["filter_recall"] is None


def test_own_label_probability_from_decision_functions():
    class Binary:
        classes_ = np.array([3, 5])

        def decision_function(self, X):
            return np.array([0.0, 2.0, -1.0])

    p = own_label_probability(Binary(), None, np.array([3, 5, 9]))
    np.testing.assert_allclose(p, [0.5, 1 / (1 + np.exp(-2.0)), 0.0])

    class Multi:
        classes_ = np.array([0, 1, 2])

        def decision_function(self, X):
            return np.array([[1.0, 2.0, 3.0]])

    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(
        own_label_probability(Multi(), None, np.array([1])), [e[1] / e.sum()]
    )
    trusted = draw_trusted(np.array([0, 0, 0, 0, 1, 1, 2]), np.arange(7), 3, rng())
    assert len(trusted) == 3 and set(np.array([0, 0, 0, 0, 1, 1, 2])[trusted]) == {0, 1, 2}


# -- presets through the real Ray runtime ------------------------------------------------------
DEFENCE_PRESETS = {
    "digits_cnn_dp": ("dp_epsilon",),
    "digits_cnn_dp_baseline": ("dp_epsilon",),
    "digits_cnn_regularisers": ("logit_squeeze_weight", "snnl_weight"),
    "digits_finetune": ("asr_before_finetune", "clean_acc_before_finetune"),
    "digits_filter": ("filter_recall",),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DEFENCE_PRESETS))
def test_defence_preset_smoke_runs_on_ray(name, tmp_path, ray_runtime):
    from sweep.launcher import run_sweep
    from sweep.store import Store

    spec = with_overrides(load_spec(PRESETS_DIR / f"{name}.yaml").smoke(), store=str(tmp_path))
    outcome = run_sweep(spec, show_progress=False)
    df = Store(tmp_path).read_table("trials", spec.name)
    assert outcome.n_error == 0, df.get("error", "").tolist()[:1]
    assert outcome.n_ok == spec.n_results == len(df)
    for col in DEFENCE_PRESETS[name]:
        assert col in df.columns, col
    assert df["clean_acc"].between(0, 1).all()
    if name == "digits_cnn_dp":
        noisy = df[df["dp_noise"] > 0]
        assert len(noisy) and noisy["dp_epsilon"].notna().all() and (noisy["dp_epsilon"] > 0).all()
        assert df.loc[df["dp_noise"] == 0, "dp_epsilon"].isna().all()
    if name == "digits_cnn_dp_baseline":
        assert df["dp_epsilon"].isna().all() and df["max_grad_norm"].isna().all()
    if name == "digits_finetune":
        assert df["asr_before_finetune"].between(0, 1).all()
    if name == "digits_filter":
        assert df.loc[df["n_poison"] > 0, "filter_recall"].between(0, 1).all()
