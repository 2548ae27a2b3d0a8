"""Every preset in search_spaces/ loads, and the attack-zoo presets run (--smoke) on a real Ray runtime.

The MNIST and CIFAR-10 presets run on tiny datasets written in the real on-disk formats; the test
points ``dataset.data_root`` at them, as a user would.
"""

from __future__ import annotations

import numpy as np
import pytest

from sweep.launcher import run_sweep
from sweep.spec import PRESETS_DIR, Spec, load_spec, parse_spec
from sweep.store import Store
from tests.dataset_files import write_cifar10, write_mnist

PRESETS = sorted(PRESETS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_loads(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    assert spec.n_results >= spec.smoke().n_results >= 1


def _smoke(name: str, tmp_path, **dataset) -> Spec:
    data = load_spec(PRESETS_DIR / f"{name}.yaml").smoke().model_dump()
    data["store"] = str(tmp_path / "store")
    data["dataset"].update(dataset)
    return parse_spec(data)


def _run(spec: Spec):
    outcome = run_sweep(spec, show_progress=False)
    df = Store(spec.store).read_table("trials", spec.name)
    assert outcome.n_error == 0, df.get("error", "").tolist()[:1]
    assert outcome.n_ok == spec.n_results == len(df)
    assert set(df["status"]) == {"ok"}
    for col in ("clean_acc", "asr", "backdoor_acc", "effective_poison_rate"):
        assert df[col].between(0, 1).all(), col
    return df


@pytest.mark.slow
def test_trigger_zoo_every_learner(tmp_path, ray_runtime):
    spec = _smoke("digits_trigger_zoo", tmp_path)
    full = load_spec(PRESETS_DIR / "digits_trigger_zoo.yaml")
    data = spec.model_dump()  # the smoke grid, but every learner of the preset
    data["grid"]["learner"] = full.grid["learner"]
    spec = parse_spec(data)
    df = _run(spec)
    assert set(df["learner"]) == {"svm_linear", "svm_rbf", "ridge", "logistic"}
    assert set(df["trigger"]) == set(full.grid["trigger"][:2])
    assert set(df["trigger_size"]) == set(full.grid["trigger_size"][:2])


@pytest.mark.slow
def test_supplant_many_to_one_and_one_to_one(tmp_path, ray_runtime):
    df = _run(_smoke("digits_supplant", tmp_path))
    assert set(df["source"].astype(str)) == {"all", "7"}
    assert (df["n_train"] == df["n_train"].iloc[0]).all()  # supplant keeps the training set's size
    assert (df["n_poison"] > 0).all()


@pytest.mark.slow
def test_clean_label_pgd(tmp_path, ray_runtime):
    df = _run(_smoke("digits_clean_label_pgd", tmp_path))
    assert set(df["epsilon"]) == {0.0, 16.0}
    hardened = df[df["epsilon"] > 0]
    assert (hardened["surrogate_loss_hardened"] >= hardened["surrogate_loss_clean"]).all()


@pytest.mark.slow
def test_mnist_7v1_on_idx_files(tmp_path, ray_runtime):
    write_mnist(tmp_path / "data", n_train_per_class=20, n_test_per_class=10, gz=True)
    df = _run(_smoke("mnist_7v1", tmp_path, data_root=str(tmp_path / "data")))
    assert (df["n_train"] == 40).all() and (df["n_test"] == 20).all()


@pytest.mark.slow
def test_cifar10_airplane_frog_on_pickled_batches(tmp_path, ray_runtime):
    written = write_cifar10(tmp_path / "data", n_per_class_per_batch=4, n_test_per_class=10)
    df = _run(_smoke("cifar10_airplane_frog", tmp_path, data_root=str(tmp_path / "data")))
    n_train = int(np.isin(written["train_labels"], [0, 6]).sum())
    assert (df["n_train"] == n_train).all() and (df["n_test"] == 20).all()
    assert set(df["target"]) == {"frog"}


@pytest.mark.slow
def test_mnist_sample_svm_rbf_on_real_digits(tmp_path, ray_runtime):
    df = _run(_smoke("mnist_sample_svm_rbf", tmp_path))
    assert (df["n_train"] == 700).all() and (df["n_test"] == 300).all()
    assert df["clean_acc"].min() > 0.9  # real digits: 7 vs 1 is easy for an RBF SVM


@pytest.mark.slow
def test_mnist_sample_cnn_with_asha(tmp_path, ray_runtime):
    """The CNN preset's smoke grid, shortened (2 epochs on 300 digits): ASHA's trials end ok or
    stopped, each a single result with its per-epoch columns."""
    spec = _smoke("mnist_sample_cnn", tmp_path, n_train=300, n_test=100)
    data = spec.model_dump()
    data["learner"]["epochs"] = 2
    data["execution"]["scheduler"]["grace_period"] = 1
    spec = parse_spec(data)
    outcome = run_sweep(spec, show_progress=False)
    df = Store(spec.store).read_table("trials", spec.name)
    assert outcome.n_error == 0 and len(df) == spec.n_results == 8
    assert set(df["status"]) <= {"ok", "stopped"} and (df["status"] == "ok").any()
    ok = df[df["status"] == "ok"]
    assert (ok["epoch"] == 2).all() and (ok["n_train"] + ok["n_val"] == 300).all()
    assert df["val_clean_acc"].between(0, 1).all() and set(df["precision"]) == {"fp32"}
