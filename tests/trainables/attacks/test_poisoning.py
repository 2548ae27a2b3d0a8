"""Poisoning strategies (docs/science.md §2): counts, labels, balance, and the clean-label hardening."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backdoor_sweep.errors import SweepError
from sweep.spec import parse_spec
from trainables.attacks.clean_label import (
    CleanLabelParams,
    CnnSurrogate,
    LogisticSurrogate,
    harden,
    pgd,
)
from trainables.attacks.poisoning import largest_remainder, make_poisoning, rate_count
from trainables.attacks.triggers import make_trigger
from trainables.data.datasets import DatasetSpec, load_dataset


@pytest.fixture(scope="module")
def digits10():
    return load_dataset(DatasetSpec(name="digits"))


def solid_patch(X):
    """A white 2×2 patch at the bottom right: rows outside it are untouched by the trigger."""
    return make_trigger({"trigger": "patch", "trigger_size": 2, "pattern": "solid"}).fit(
        X, np.random.default_rng(0)
    )


def outside_patch(X):
    return X[:, :-2, :].reshape(len(X), -1)


def poison(data, seed=0, **config):
    return make_poisoning(config).poison(
        data.X_train,
        data.y_train,
        solid_patch(data.X_train),
        data.class_index(1),
        data.n_classes,
        np.random.default_rng(seed),
        classes=data.classes,
    )


def row_lookup(X):
    """Map from an image's untriggered part to its row indices in X."""
    out: dict[bytes, list[int]] = {}
    for i, r in enumerate(outside_patch(X)):
        out.setdefault(r.tobytes(), []).append(i)
    return out


# -- counting rules ------------------------------------------------------------------------------
def test_rate_count_is_a_floor_robust_to_rounding():
    assert rate_count(0.29, 100) == 29  # 0.29 * 100 = 28.999999999999996 in floating point
    assert rate_count(0.1, 25) == 2
    assert rate_count(0.0, 10) == 0


@pytest.mark.parametrize(
    ("total", "sizes", "expect"),
    [
        (10, [3, 3, 4], [3, 3, 4]),
        (5, [1, 1, 1], [2, 2, 1]),  # equal remainders: the class listed first gets the unit
        (1, [5, 5], [1, 0]),
        (7, [10, 30, 60], [1, 2, 4]),  # quotas 0.7, 2.1, 4.2: the largest remainder (0.7) wins
        (0, [4, 4], [0, 0]),
    ],
)
def test_largest_remainder(total, sizes, expect):
    got = largest_remainder(total, np.array(sizes))
    assert got.tolist() == expect and got.sum() == total


# -- dirty label -------------------------------------------------------------------------------
@pytest.mark.parametrize("multiclass", [False, True])
def test_dirty_label_in_place(digits_data, digits10, multiclass):
    data = digits10 if multiclass else digits_data
    p = poison(data, poisoning="dirty_label", poison_rate=0.2)
    n, t = len(data.y_train), data.class_index(1)
    k = int(0.2 * n)
    assert len(p.y) == n and p.n_poison == k
    assert (p.y[p.is_poison] == t).all()
    np.testing.assert_array_equal(p.y[~p.is_poison], data.y_train[~p.is_poison])
    np.testing.assert_array_equal(p.X[~p.is_poison], data.X_train[~p.is_poison])
    assert (p.X[p.is_poison][:, -2:, -2:] == 1.0).all()
    if multiclass:
        assert (data.y_train[p.is_poison] != t).all()
    counts = json.loads(p.info["poison_per_class"])
    assert list(counts) == [str(c) for c in data.classes] and sum(counts.values()) == k
    assert counts == {
        str(c): int(np.sum(data.y_train[p.is_poison] == i)) for i, c in enumerate(data.classes)
    }
    assert p.info["effective_poison_rate"] == pytest.approx(k / n)


def test_dirty_label_added_appends_triggered_copies(digits10):
    data = digits10
    p = poison(data, poisoning="dirty_label_added", poison_rate=0.1)
    n, t = len(data.y_train), data.class_index(1)
    k = int(0.1 * n)
    assert (
        len(p.y) == n + k
        and p.n_poison == k
        and p.is_poison[n:].all()
        and not p.is_poison[:n].any()
    )
    np.testing.assert_array_equal(p.X[:n], data.X_train)  # the originals stay, untouched
    np.testing.assert_array_equal(p.y[:n], data.y_train)
    assert (p.y[n:] == t).all() and (p.X[n:, -2:, -2:] == 1.0).all()
    lookup = row_lookup(data.X_train)
    sources = [lookup[r.tobytes()][0] for r in outside_patch(p.X[n:])]
    assert (data.y_train[sources] != t).all()  # multiclass: copies of non-target samples
    assert p.info["effective_poison_rate"] == pytest.approx(k / (n + k))


# -- supplant ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "rate"), [("all", 0.3), (7, 0.5), ("3", 0.25)])
def test_supplant_keeps_balance_and_originals(digits10, source, rate):
    data = digits10
    y, t = data.y_train, data.class_index(1)
    p = poison(data, poisoning="supplant", poison_rate=rate, source=source)
    n_t = int(np.sum(y == t))
    m = int(np.floor(rate * n_t))
    assert p.n_poison == m and len(p.y) == len(y)
    np.testing.assert_array_equal(p.y, y)  # labels, hence class balance, are kept
    assert (y[p.is_poison] == t).all()  # only target rows were replaced …
    np.testing.assert_array_equal(
        p.X[~p.is_poison], data.X_train[~p.is_poison]
    )  # … the rest untouched
    lookup = row_lookup(data.X_train)
    donors = [lookup[r.tobytes()][0] for r in outside_patch(p.X[p.is_poison])]
    assert (y[donors] != t).all()  # target samples are never triggered
    assert len(set(donors)) == m  # distinct source samples, whose clean originals stay in place
    assert (p.X[p.is_poison][:, -2:, -2:] == 1.0).all()
    counts = json.loads(p.info["poison_per_class"])
    got = np.bincount(y[donors], minlength=data.n_classes)
    assert counts == {str(c): int(got[i]) for i, c in enumerate(data.classes)}
    sources = [c for c in range(10) if c != t] if source == "all" else [data.class_index(source)]
    expect = largest_remainder(m, np.array([np.sum(y == c) for c in sources]))
    assert [got[c] for c in sources] == expect.tolist()
    if source == "all":  # proportional: within one of m·N_c/ΣN_k
        quota = m * np.array([np.sum(y == c) for c in sources]) / np.sum(y != t)
        assert np.all(np.abs(expect - quota) < 1)
    assert p.info["effective_poison_rate"] == pytest.approx(m / len(y))


def test_supplant_binary_many_to_one_is_one_to_one(digits_data):
    a = poison(digits_data, poisoning="supplant", poison_rate=0.4, source="all")
    b = poison(digits_data, poisoning="supplant", poison_rate=0.4, source=7)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.info == b.info


def test_supplant_refuses_impossible_requests(digits10):
    with pytest.raises(SweepError, match="^source must differ from the target class"):
        poison(digits10, poisoning="supplant", source=1)
    with pytest.raises(SweepError, match="^source must be 'all' or one of the classes"):
        poison(digits10, poisoning="supplant", source="cat")
    sub = load_dataset(DatasetSpec(name="digits", classes=[7, 1], n_train=60))
    mask = (sub.y_train == 1) | (np.arange(len(sub.y_train)) < 3)
    sub.X_train, sub.y_train = sub.X_train[mask], sub.y_train[mask]  # only ~3 sevens left
    with pytest.raises(SweepError, match="^poison_rate 0.9 needs .* samples of source class 7"):
        poison(sub, poisoning="supplant", poison_rate=0.9, source=7)


def _spec(**attack):
    return {
        "name": "s",
        "dataset": {"name": "digits", "classes": [7, 1, 3]},
        "learner": {"name": "svm_rbf"},
        "attack": {"trigger": "patch", "poisoning": "supplant", "target": 1, **attack},
    }


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (1, "attack.source must differ from the target class 1; got '1'"),
        (5, "attack.source must be 'all' or one of the classes [7, 1, 3]; got '5'"),
    ],
)
def test_spec_validation_checks_the_source_class(source, message):
    with pytest.raises(SweepError) as err:
        parse_spec(_spec(source=source))
    assert str(err.value) == message
    parse_spec(_spec(source=3))  # a selected class other than the target is fine


# -- clean label -------------------------------------------------------------------------------
@pytest.mark.parametrize("hardening", ["none", "pgd_l2", "pgd_linf", "noise", "interpolation"])
def test_clean_label_poisons_only_the_target_class_and_keeps_labels(digits10, hardening):
    data = digits10
    y, t = data.y_train, data.class_index(1)
    p = poison(
        data, poisoning="clean_label", poison_rate=0.5, hardening=hardening, epsilon=32, tau=0.3
    )
    k = int(0.5 * np.sum(y == t))
    np.testing.assert_array_equal(p.y, y)
    assert p.n_poison == k and (y[p.is_poison] == t).all()
    np.testing.assert_array_equal(p.X[~p.is_poison], data.X_train[~p.is_poison])
    assert (p.X[p.is_poison][:, -2:, -2:] == 1.0).all()
    assert p.X.min() >= 0 and p.X.max() <= 1
    body = outside_patch(p.X[p.is_poison]) - outside_patch(data.X_train[p.is_poison])
    assert (np.abs(body).max() == 0) == (hardening == "none")
    assert json.loads(p.info["poison_per_class"])["1"] == k
    assert p.info["effective_poison_rate"] == pytest.approx(k / len(y))
    if hardening.startswith("pgd"):
        assert p.info["surrogate_loss_hardened"] > p.info["surrogate_loss_clean"]


def test_logistic_surrogate_gradient_is_exact(digits_data, digits10):
    for data in (digits_data, digits10):
        rng = np.random.default_rng(0)
        s = LogisticSurrogate().fit(data.X_train, data.y_train, data.n_classes, rng)
        X, y = data.X_train[:4], data.y_train[:4]
        g = s.input_grad(X, y)
        h = 1e-6
        for i, (r, c) in enumerate([(3, 4), (5, 2), (0, 0), (7, 7)]):
            Xp, Xm = X.copy(), X.copy()
            Xp[i, r, c] += h
            Xm[i, r, c] -= h
            fd = (s.loss(Xp, y)[i] - s.loss(Xm, y)[i]) / (2 * h)
            assert g[i, r, c] == pytest.approx(fd, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("multiclass", [False, True])
@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("epsilon", [8.0, 64.0])
def test_pgd_stays_in_its_ball_and_raises_the_loss(
    digits_data, digits10, multiclass, norm, epsilon
):
    data = digits10 if multiclass else digits_data
    s = LogisticSurrogate().fit(
        data.X_train, data.y_train, data.n_classes, np.random.default_rng(0)
    )
    X = data.X_train[data.y_train == 1][:30]
    y = np.full(len(X), 1)
    adv = pgd(s, X, y, norm, epsilon, steps=10)
    D = (adv - X).reshape(len(X), -1)
    size = np.abs(D).max(axis=1) if norm == "linf" else np.linalg.norm(D, axis=1)
    assert (size <= epsilon / 255 + 1e-12).all()
    assert size.max() > 0.5 * epsilon / 255  # it moved, not a no-op
    assert adv.min() >= 0 and adv.max() <= 1
    before, after = s.loss(X, y), s.loss(adv, y)
    assert (after >= before).all() and after.mean() > before.mean()
    if norm == "linf" and not multiclass:
        # binary logistic: the gradient's sign is fixed, so ascent fills the ℓ∞ ball wherever
        # clipping to [0, 1] does not interfere (pixels with zero weight stay put)
        inner = (epsilon / 255 < X) & (1 - epsilon / 255 > X)
        moved = np.abs(adv - X)[inner]
        assert np.allclose(moved[moved > 0], epsilon / 255) and (moved > 0).mean() > 0.9


def test_noise_and_interpolation_hardening(digits_data):
    data = digits_data
    t = data.class_index(1)
    X = data.X_train[data.y_train == t]
    noisy, _ = harden(
        X,
        t,
        CleanLabelParams(hardening="noise", noise_std=20),
        data.X_train,
        data.y_train,
        2,
        np.random.default_rng(0),
    )
    d = (noisy - X)[(X > 0.3) & (X < 0.7)]  # pixels the clipping does not reach
    assert np.std(d) == pytest.approx(20 / 255, rel=0.1) and abs(np.mean(d)) < 0.01
    tau = 0.4
    mixed, _ = harden(
        X,
        t,
        CleanLabelParams(hardening="interpolation", tau=tau),
        data.X_train,
        data.y_train,
        2,
        np.random.default_rng(0),
    )
    Z = (mixed - (1 - tau) * X) / tau  # the image each sample was pulled towards
    others = data.X_train[data.y_train != t].reshape(-1, 64)
    for z in Z.reshape(len(Z), -1)[:10]:
        dist = np.abs(others - z).max(axis=1)
        assert dist.min() < 1e-9  # z is a training image of the other class


@pytest.mark.slow
def test_cnn_surrogate_pgd_on_colour_images():
    """The torch surrogate path: colour images, ℓ∞ and ℓ2 balls respected, loss raised."""
    rng = np.random.default_rng(0)
    n = 120
    y = rng.integers(0, 2, size=n)
    X = rng.uniform(0, 0.6, size=(n, 10, 10, 3))
    X[y == 1, 3:7, 3:7, 0] += 0.4  # class 1: a red square
    s = CnnSurrogate().fit(X, y, 2, np.random.default_rng(1))
    sel = y == 1
    for norm in ("linf", "l2"):
        adv = pgd(s, X[sel], y[sel], norm, 16.0, steps=5)
        D = (adv - X[sel]).reshape(sel.sum(), -1)
        size = np.abs(D).max(axis=1) if norm == "linf" else np.linalg.norm(D, axis=1)
        assert (size <= 16 / 255 + 1e-6).all()
        assert s.loss(adv, y[sel]).mean() > s.loss(X[sel], y[sel]).mean()


# -- through the trial and a real sweep ----------------------------------------------------------
def _attack_spec(store, **grid):
    return {
        "name": "attack-zoo",
        "dataset": {"name": "digits", "classes": [7, 1, 3]},
        "learner": {"name": "svm_rbf", "C": 10, "gamma": 0.05},
        "attack": {
            "trigger": "patch",
            "poisoning": "supplant",
            "target": 1,
            "trigger_size": 2,
            "poison_rate": 0.3,
        },
        "grid": grid,
        "store": str(store),
    }


def test_run_result_rows_carry_the_attack_columns(tmp_path):
    from sweep.plan import plan_trials
    from trainables.trial import run_result

    spec = parse_spec(_attack_spec(tmp_path, source=["all", 7]))
    data = load_dataset(spec.dataset)
    results = [u for plan in plan_trials(spec) for u in plan.results]
    rows = [run_result(u, data).row for u in results]
    for result, row in zip(results, rows, strict=True):
        for col in (
            "asr",
            "asr_excl_pred",
            "robust_acc",
            "effective_poison_rate",
            "poison_per_class",
        ):
            assert col in row
        counts = json.loads(row["poison_per_class"])
        n_t = int(np.sum(data.y_train == data.class_index(1)))
        assert sum(counts.values()) == row["n_poison"] == int(0.3 * n_t)
        assert row["effective_poison_rate"] == pytest.approx(row["n_poison"] / row["n_train"])
        assert counts["1"] == 0 and (result["source"] == "all") == (counts["3"] > 0)
        assert 0 <= row["asr"] <= 1 and 0 <= row["robust_acc"] <= 1 - row["asr"] + 1e-12


@pytest.mark.slow
def test_smoke_sweep_over_triggers_and_poisonings(tmp_path, ray_runtime):
    from sweep.launcher import run_sweep
    from sweep.store import Store

    spec = parse_spec(
        _attack_spec(
            tmp_path / "store",
            trigger=["patch", "blend", "sine", "grid"],
            poisoning=["dirty_label", "supplant"],
        )
    )
    outcome = run_sweep(spec, show_progress=False)
    assert (outcome.n_ok, outcome.n_error) == (8, 0)
    df = Store(tmp_path / "store").read_table("trials", "attack-zoo")
    assert len(df) == 8 and (df["status"] == "ok").all()
    assert set(zip(df["trigger"], df["poisoning"], strict=True)) == {
        (t, p) for t in ("patch", "blend", "sine", "grid") for p in ("dirty_label", "supplant")
    }
    for col in ("asr", "asr_excl_pred", "robust_acc", "clean_acc", "effective_poison_rate"):
        assert df[col].between(0, 1).all(), col
    assert (df["effective_poison_rate"] > 0).all()
    per_class = df["poison_per_class"].map(json.loads)
    assert (per_class.map(lambda d: sum(d.values())) == df["n_poison"]).all()
    supplant = df["poisoning"] == "supplant"
    assert (
        per_class[supplant].map(lambda d: d["1"]) == 0
    ).all()  # the target class is never a source
    # each trigger's own parameters became columns; the ones it does not read stay empty
    assert df.loc[df["trigger"] == "sine", "alpha"].eq(0.1).all()
    assert df.loc[df["trigger"] == "blend", "alpha"].eq(0.2).all()
    assert df.loc[df["trigger"] == "grid", "visibility"].eq(25.0).all()
    assert df.loc[df["trigger"] == "patch", "alpha"].isna().all()
