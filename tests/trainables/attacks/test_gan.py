"""GAN latent interpolation (docs/gan_interpolation.md): the generator, encoding, the hardening,
the generator cache and the refusals. Unit tests use tiny settings (a few steps); the tests that
train a real generator or run a sweep are marked slow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from backdoor_sweep.errors import SweepError
from sweep.spec import parse_spec
from tests.conftest import ROOT
from trainables.attacks import generator_cache as gc
from trainables.attacks.clean_label import CleanLabelParams, harden
from trainables.attacks.gan import (
    GanSettings,
    check_image_shape,
    decode,
    encode,
    interpolate,
    train_generator,
)
from trainables.attacks.poisoning import make_poisoning
from trainables.attacks.triggers import make_trigger

#: settings small enough for unit tests (a generator in well under a second on digits)
TINY = {"gan_latent_dim": 4, "gan_steps": 3, "gan_encode_steps": 5}


@pytest.fixture(autouse=True)
def fresh_memo():
    """Each test starts with an empty process memo and event list."""
    gc._MEMO.clear()
    gc.EVENTS.clear()
    yield
    gc._MEMO.clear()
    gc.EVENTS.clear()


@pytest.fixture(scope="module")
def tiny_generator(digits_data):
    return train_generator(digits_data.X_train, GanSettings(latent_dim=4, steps=3, seed=0))


def _events(kind, events=None):
    return [e for e in (gc.EVENTS if events is None else events) if e["event"] == kind]


# -- the generator ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(8, 8), (12, 12), (28, 28), (32, 32)])
def test_supported_image_shapes(shape):
    check_image_shape(shape)


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1), (8, 12), (10, 10), (4, 4), (36, 36)])
def test_unsupported_image_shapes_are_refused_in_one_line(shape):
    with pytest.raises(SweepError) as err:
        check_image_shape(shape)
    msg = str(err.value)
    assert msg.startswith("hardening gan_interpolation needs grey square images")
    assert msg.endswith(f"got image shape {shape}") and "\n" not in msg


def test_training_records_losses_and_is_seeded(digits_data, tiny_generator):
    g = tiny_generator
    assert set(g.losses) == {"critic_loss", "wasserstein", "gradient_penalty", "generator_loss"}
    assert all(len(v) == 3 and np.isfinite(v).all() for v in g.losses.values())
    again = train_generator(digits_data.X_train, GanSettings(latent_dim=4, steps=3, seed=0))
    for k, v in g.state.items():
        assert np.array_equal(v.numpy(), again.state[k].numpy()), k
    other = train_generator(digits_data.X_train, GanSettings(latent_dim=4, steps=3, seed=1))
    assert not np.array_equal(g.state["fc.weight"].numpy(), other.state["fc.weight"].numpy())
    out = decode(g, np.random.default_rng(0).standard_normal((5, 4)))
    assert out.shape == (5, 8, 8) and out.min() >= 0 and out.max() <= 1


def test_encoding_lowers_the_error_and_keeps_the_best_restart(digits_data, tiny_generator):
    X = digits_data.X_train[:6]
    _, err0 = encode(tiny_generator, X, steps=1, lr=0.1, restarts=1, seed=3)
    z1, err1 = encode(tiny_generator, X, steps=40, lr=0.1, restarts=1, seed=3)
    z3, err3 = encode(tiny_generator, X, steps=40, lr=0.1, restarts=3, seed=3)
    assert err1.mean() < err0.mean()
    # restart 0 of three is the single restart's start, so the best of three is never worse
    assert (err3 <= err1 + 1e-9).all()
    recon = decode(tiny_generator, z1)
    np.testing.assert_allclose(((recon - X) ** 2).reshape(6, -1).sum(1), err1, rtol=1e-5)


def test_interpolation_ends_are_the_two_reproductions(tiny_generator):
    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    np.testing.assert_allclose(interpolate(tiny_generator, z1, z2, 0.0), decode(tiny_generator, z1))
    np.testing.assert_allclose(interpolate(tiny_generator, z1, z2, 1.0), decode(tiny_generator, z2))
    mid = interpolate(tiny_generator, z1, z2, 0.5)
    assert not np.allclose(mid, decode(tiny_generator, z1))


# -- the hardening ---------------------------------------------------------------------------------
def _params(**kw):
    return CleanLabelParams(hardening="gan_interpolation", **{**TINY, **kw})


def _harden(data, rate_rows, rng_seed=0, **kw):
    t = data.class_index(1)
    X = data.X_train[rate_rows]
    return harden(
        X,
        t,
        _params(**kw),
        data.X_train,
        data.y_train,
        data.n_classes,
        np.random.default_rng(rng_seed),
    )


def test_tau_zero_is_the_generators_reproduction_and_partners_match_pixel_interpolation(
    digits_data,
):
    data = digits_data
    rows = np.flatnonzero(data.y_train == data.class_index(1))[:10]
    X0, info = _harden(data, rows, tau=0.0)
    key, gen, Z, err = gc.encoded_training_set(
        data.X_train, GanSettings(4, 3, 0), encode_steps=5, encode_lr=0.1, restarts=1
    )
    assert info["generator_key"] == key
    np.testing.assert_allclose(X0, decode(gen, Z[rows]))
    assert info["gan_reconstruction_mse"] == pytest.approx(err[rows].mean() / 64)
    # τ = 1 decodes the partner's code; pixel interpolation with τ = 1 returns the partner itself
    X1, _ = _harden(data, rows, tau=1.0)
    partners, _ = harden(
        data.X_train[rows],
        data.class_index(1),
        CleanLabelParams(hardening="interpolation", tau=1.0),
        data.X_train,
        data.y_train,
        data.n_classes,
        np.random.default_rng(0),
    )
    idx = gc.row_index(data.X_train, partners)
    assert (idx >= 0).all() and (data.y_train[idx] != data.class_index(1)).all()
    np.testing.assert_allclose(X1, decode(gen, Z[idx]))


def test_clean_label_poisoning_with_gan_interpolation_keeps_labels(digits_data):
    data = digits_data
    t = data.class_index(1)
    trigger = make_trigger({"trigger": "patch", "trigger_size": 2, "pattern": "solid"}).fit(
        data.X_train, np.random.default_rng(0)
    )
    config = {"poisoning": "clean_label", "poison_rate": 0.4, "hardening": "gan_interpolation"}
    p = make_poisoning({**config, "tau": 0.2, **TINY}).poison(
        data.X_train, data.y_train, trigger, t, data.n_classes, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(p.y, data.y_train)
    assert p.n_poison == int(0.4 * np.sum(data.y_train == t)) and (p.y[p.is_poison] == t).all()
    np.testing.assert_array_equal(p.X[~p.is_poison], data.X_train[~p.is_poison])
    assert (p.X[p.is_poison][:, -2:, -2:] == 1.0).all()
    assert p.X.min() >= 0 and p.X.max() <= 1
    assert not np.array_equal(p.X[p.is_poison][:, :-2], data.X_train[p.is_poison][:, :-2])
    assert {"generator_key", "gan_reconstruction_mse"} <= set(p.info)


def test_images_outside_the_training_set_are_encoded_on_the_spot(digits_data):
    data = digits_data
    X = data.X_test[data.y_test == data.class_index(1)][:3]
    out, info = harden(
        X,
        data.class_index(1),
        _params(tau=0.0),
        data.X_train,
        data.y_train,
        2,
        np.random.default_rng(0),
    )
    assert out.shape == X.shape and np.isfinite(info["gan_reconstruction_mse"])
    assert len(_events("trained")) == 1 and len(_events("encoded")) == 1  # the training set, once


# -- the cache ---------------------------------------------------------------------------------------
def test_a_sweep_over_tau_and_rate_trains_and_encodes_once(digits_data, tmp_path):
    data = digits_data
    targets = np.flatnonzero(data.y_train == data.class_index(1))
    outputs = {}
    with gc.cache_root(tmp_path):
        for tau in (0.0, 0.1, 0.2, 0.3):
            for k in (5, 20, 40):
                outputs[tau, k] = _harden(data, targets[:k], tau=tau)[0]
    assert len(_events("trained")) == 1 and len(_events("encoded")) == 1
    on_disk = gc.read_events(tmp_path)
    assert [e["event"] for e in on_disk] == ["trained", "encoded"]
    folder = tmp_path / gc.FOLDER
    meta = json.loads((folder / f"{on_disk[0]['key']}.json").read_text())
    assert meta["n_images"] == len(data.X_train) and len(meta["losses"]["critic_loss"]) == 3
    assert not list(folder.glob(".tmp-*"))

    # a new process (memo empty) loads from disk: nothing retrained, the same images
    gc._MEMO.clear()
    with gc.cache_root(tmp_path):
        again = _harden(data, targets[:20], tau=0.2)[0]
    np.testing.assert_array_equal(again, outputs[0.2, 20])
    assert len(gc.read_events(tmp_path)) == 2

    # other generator settings are another entry
    with gc.cache_root(tmp_path):
        _harden(data, targets[:5], tau=0.2, gan_seed=1)
    assert [e["event"] for e in gc.read_events(tmp_path)].count("trained") == 2


def test_a_damaged_cache_file_is_recomputed_identically(digits_data, tmp_path):
    data = digits_data
    rows = np.flatnonzero(data.y_train == data.class_index(1))[:8]
    with gc.cache_root(tmp_path):
        first = _harden(data, rows, tau=0.3)[0]
    (pt,) = (tmp_path / gc.FOLDER).glob("*.pt")
    pt.write_bytes(b"not a torch file")
    gc._MEMO.clear()
    with gc.cache_root(tmp_path):
        second = _harden(data, rows, tau=0.3)[0]
    np.testing.assert_array_equal(first, second)
    assert [e["event"] for e in gc.read_events(tmp_path)].count("trained") == 2


@pytest.mark.slow
def test_other_processes_reuse_the_cached_generator(digits_data, tmp_path):
    data = digits_data
    rows = np.flatnonzero(data.y_train == data.class_index(1))[:8]
    with gc.cache_root(tmp_path):
        mine = _harden(data, rows, tau=0.2)[0]
    script = f"""
import numpy as np
from trainables.attacks import generator_cache as gc
from trainables.attacks.clean_label import CleanLabelParams, harden
from trainables.data.datasets import DatasetSpec, load_dataset
d = load_dataset(DatasetSpec(name="digits", classes=[7, 1]))
rows = np.flatnonzero(d.y_train == 1)[:8]
p = CleanLabelParams(hardening="gan_interpolation", tau=0.2, **{TINY!r})
with gc.cache_root({str(tmp_path)!r}):
    out, _ = harden(d.X_train[rows], 1, p, d.X_train, d.y_train, 2, np.random.default_rng(0))
np.save({str(tmp_path / "theirs.npy")!r}, out)
"""
    for _ in range(2):
        res = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
            timeout=300,
        )
        assert res.returncode == 0, res.stderr
        np.testing.assert_array_equal(np.load(tmp_path / "theirs.npy"), mine)
    assert [e["event"] for e in gc.read_events(tmp_path)] == ["trained", "encoded"]


# -- refusals ----------------------------------------------------------------------------------------
def _spec(dataset=None, **attack):
    return {
        "name": "gan",
        "dataset": dataset or {"name": "digits", "classes": [7, 1]},
        "learner": {"name": "logistic"},
        "attack": {
            "trigger": "patch",
            "poisoning": "clean_label",
            "hardening": "gan_interpolation",
            "target": 1,
            **attack,
        },
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            _spec(tau=1.5),
            "attack.tau must be less than or equal to 1; got 1.5",
        ),
        (
            {**_spec(), "grid": {"tau": [0.2, -0.1]}},
            "grid.tau must be greater than or equal to 0; got -0.1",
        ),
        (
            _spec(gan_steps=0),
            "attack.gan_steps must be greater than or equal to 1; got 0",
        ),
        (
            _spec(gan_latent_dim=1000),
            "attack.gan_latent_dim must be less than or equal to 256; got 1000",
        ),
        (
            _spec(gan_encode_lr=0),
            "attack.gan_encode_lr must be greater than 0; got 0",
        ),
        (
            _spec(gan_restarts=17),
            "attack.gan_restarts must be less than or equal to 16; got 17",
        ),
        (
            _spec(dataset={"name": "cifar10", "classes": ["airplane", "frog"]}, target="frog"),
            "attack.hardening gan_interpolation needs grey square images with a side that is a "
            "multiple of 4 in [8, 32] (e.g. 8×8 digits, 28×28 MNIST); got image shape (32, 32, 3)",
        ),
        (
            {
                **_spec(
                    hardening="pgd_linf",
                    dataset={"name": "cifar10", "classes": [0, 6]},
                    target="frog",
                ),
                "grid": {"hardening": ["pgd_linf", "gan_interpolation"]},
            },
            "grid.hardening gan_interpolation needs grey square images",
        ),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(spec, message):
    with pytest.raises(SweepError) as err:
        parse_spec(spec)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_other_learners_and_hardenings_are_unaffected():
    parse_spec(
        _spec(
            dataset={"name": "cifar10", "classes": [0, 6]}, hardening="interpolation", target="frog"
        )
    )
    for learner in ("svm_rbf", "cnn", "mlp"):
        parse_spec({**_spec(tau=0.2), "learner": {"name": learner}})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("attack", "needle"),
    [
        ({"tau": 1.5}, "error: attack.tau must be less than or equal to 1; got 1.5"),
        ({"gan_encode_steps": 0}, "error: attack.gan_encode_steps must be greater than or equal"),
        ({"dataset": "cifar10"}, "error: attack.hardening gan_interpolation needs grey square"),
    ],
)
def test_the_cli_refuses_with_one_line_exit_2_and_writes_nothing(tmp_path, cli_env, attack, needle):
    import yaml

    from tests.conftest import cli

    dataset = {"name": "cifar10", "classes": [0, 6]} if attack.pop("dataset", None) else None
    spec = _spec(dataset, **attack)
    if dataset:
        spec["attack"]["target"] = "frog"
    spec["store"] = str(tmp_path / "store")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    res = cli("run", str(path), env=cli_env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().startswith(needle) and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "store").exists()


# -- a real sweep --------------------------------------------------------------------------------------
def _sweep_spec(store, name, taus):
    spec = _spec(**TINY)
    spec.update(
        name=name,
        grid={"tau": taus, "poison_rate": [0.2, 0.5]},
        execution={"inner_axes": []},  # one result per trial: trials run side by side on 2 CPUs
        store=str(store),
    )
    return parse_spec(spec)


@pytest.mark.slow
def test_sweeps_over_tau_and_rate_train_the_generator_once(tmp_path, ray_runtime):
    from sweep.launcher import run_sweep
    from sweep.store import Store
    from sweep.verify import verify_store

    store = tmp_path / "store"
    outcome = run_sweep(_sweep_spec(store, "gan-a", [0.0, 0.2, 0.4]), show_progress=False)
    assert (outcome.n_ok, outcome.n_error) == (6, 0)
    events = gc.read_events(store / ".cache")
    assert [e["event"] for e in events] == ["trained", "encoded"]
    df = Store(store).read_table("trials", "gan-a")
    assert (df["status"] == "ok").all() and df["generator_key"].nunique() == 1
    assert df["generator_key"].iloc[0] == events[0]["key"]
    assert (df["n_poison"] > 0).all() and df["gan_reconstruction_mse"].between(0, 1).all()

    # another sweep of the store, other τ values: the generator and the codes are reused
    outcome = run_sweep(_sweep_spec(store, "gan-b", [0.1, 0.3]), show_progress=False)
    assert (outcome.n_ok, outcome.n_error) == (4, 0)
    assert len(gc.read_events(store / ".cache")) == 2
    report = verify_store(Store(store))
    assert report.ok and not any(".cache" in note for note in report.notes)

    # `explain` rebuilds a result with the sweep's cached generator: the same poisons, the same model
    from analysis.explain import rebuild

    gc._MEMO.clear()
    row = df.sort_values("result_id").iloc[0].to_dict()
    rebuilt = rebuild(Store(store), "gan-a", row)
    for metric, (stored, now) in rebuilt.reproduced.items():
        assert now == pytest.approx(stored, abs=1e-12), metric
    assert len(gc.read_events(store / ".cache")) == 2
