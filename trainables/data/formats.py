"""Readers for the standard on-disk dataset formats, through torchvision's own reader code.

Each reader returns a `Source`: the dataset's class names and, per split, the labels (as indices
into those names) plus a function that materialises the images of chosen rows as float arrays in
[0, 1]. Labels come first so that class selection and subsampling happen before any pixels are
converted (an image folder only decodes the files it keeps).

Layouts, under ``data_root`` (see `expected_files`):

- ``mnist`` / ``fashion_mnist``: ``MNIST/raw/`` / ``FashionMNIST/raw/`` holding
  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte`` — uncompressed, as torchvision reads them. Files present only as
  ``.gz`` are decompressed next to themselves with torchvision's ``extract_archive``, as its
  ``download`` step does.
- ``cifar10``: ``cifar-10-batches-py/`` with ``data_batch_1`` … ``data_batch_5``, ``test_batch``
  and ``batches.meta`` (the pickled batches of the official python archive). torchvision checks
  each file's md5 against the official release; we read with the same class but check only that
  the files exist (`_cifar10_reader`), so a re-pickled copy or the tests' tiny fixtures in the same
  format load too. ``download: true`` still verifies the downloaded archive's md5.
- ``image_folder``: ``<folder>/<class>/<image>`` read by ``torchvision.datasets.ImageFolder`` and
  resized; when ``<folder>`` holds ``train/`` and ``val/`` (or ``test/``) sub-folders of class
  folders (Imagenette's layout) those are the train and test splits.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from backdoor_sweep.errors import SweepError

#: torchvision class and folder per IDX dataset
IDX_DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
TEST_SPLIT_NAMES = ("val", "test")


@dataclass
class Split:
    """One split: labels (indices into `Source.classes`) and ``fetch(rows) -> images in [0, 1]``."""

    y: np.ndarray
    fetch: Callable[[np.ndarray], np.ndarray]


@dataclass
class Source:
    """A dataset as read from disk; ``test`` is None when it has no official test split."""

    classes: list
    train: Split
    test: Split | None


def _uint8_split(images: np.ndarray, labels: np.ndarray) -> Split:
    def fetch(rows: np.ndarray) -> np.ndarray:
        return images[rows].astype(np.float64) / 255.0

    return Split(np.asarray(labels, dtype=np.int64), fetch)


def expected_files(name: str, root: Path) -> tuple[Path, tuple[str, ...]]:
    """The folder a dataset is read from and the files it must hold there."""
    if name in IDX_DATASETS:
        return root / IDX_DATASETS[name] / "raw", IDX_FILES
    if name == "cifar10":
        return root / CIFAR10_FOLDER, CIFAR10_FILES
    raise ValueError(name)  # pragma: no cover - callers pass known names


def _missing(name: str, root: Path) -> list[str]:
    folder, files = expected_files(name, root)
    if name in IDX_DATASETS:
        return [
            f for f in files if not (folder / f).is_file() and not (folder / f"{f}.gz").is_file()
        ]
    return [f for f in files if not (folder / f).is_file()]


def _require_files(name: str, root: Path) -> None:
    missing = _missing(name, root)
    if not missing:
        return
    folder, files = expected_files(name, root)
    gz = " (or the same names with .gz)" if name in IDX_DATASETS else ""
    lacking = ", ".join(missing) if folder.is_dir() else "the whole folder"
    raise SweepError(
        f"dataset {name} needs {', '.join(files)}{gz} in {folder}; missing: {lacking} — "
        "set dataset.data_root (or BACKDOOR_SWEEP_DATA) to the folder holding them, "
        "or dataset.download: true to fetch them"
    )


def _download(name: str, root: Path, make: Callable[[], object]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    try:
        make()
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SweepError(
            f"dataset.download could not fetch {name} into {root} ({first}); "
            "place the files there yourself and set download: false"
        ) from None


def _gunzip_missing(folder: Path) -> None:
    """Decompress ``X.gz`` to ``X`` where only the compressed file is present (as torchvision's
    ``download`` does after fetching)."""
    from torchvision.datasets.utils import extract_archive

    for f in IDX_FILES:
        raw, gz = folder / f, folder / f"{f}.gz"
        if raw.is_file() or not gz.is_file():
            continue
        try:
            extract_archive(str(gz), str(folder))
        except (OSError, EOFError) as err:
            raw.unlink(missing_ok=True)
            raise SweepError(
                f"dataset file {gz} must be a gzip-compressed IDX file; got one that fails to decompress ({err})"
            ) from None


def read_idx(name: str, root: Path, download: bool) -> Source:
    """MNIST or Fashion-MNIST from ``<root>/<MNIST|FashionMNIST>/raw`` through torchvision."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, IDX_DATASETS[name])
    if download:
        _download(name, root, lambda: cls(str(root), train=True, download=True))
    _require_files(name, root)
    folder, _ = expected_files(name, root)
    _gunzip_missing(folder)
    splits = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except (AssertionError, ValueError, TypeError, RuntimeError) as err:
            part = "train" if train else "t10k"
            raise SweepError(
                f"dataset {name} files {part}-*-ubyte in {folder} must be IDX files of uint8 images "
                f"and labels; torchvision could not read them ({type(err).__name__}: {err})"
            ) from None
        images, labels = ds.data.numpy(), ds.targets.numpy()
        if len(images) != len(labels):
            raise SweepError(
                f"dataset {name} in {folder} must have as many labels as images; got {len(labels)} and {len(images)}"
            )
        splits.append(_uint8_split(images, labels))
    return Source(list(range(10)) if name == "mnist" else list(cls.classes), splits[0], splits[1])


def _cifar10_reader():
    """torchvision's CIFAR10 reader with existence checks instead of the official md5s."""
    from torchvision.datasets import CIFAR10

    class CIFAR10Files(CIFAR10):
        train_list = [[f, None] for f, _ in CIFAR10.train_list]
        test_list = [[f, None] for f, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return CIFAR10Files


def read_cifar10(root: Path, download: bool) -> Source:
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (pickled batches) through torchvision."""
    import pickle

    cls = _cifar10_reader()
    if download:
        _download("cifar10", root, lambda: cls(str(root), train=True, download=True))
    _require_files("cifar10", root)
    splits, classes = [], []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=False)
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
            raise SweepError(
                f"dataset cifar10 files in {root / CIFAR10_FOLDER} must be the python-format pickled "
                f"batches (dicts with data (n, 3072) uint8 and labels); torchvision could not read them "
                f"({type(err).__name__}: {err})"
            ) from None
        splits.append(_uint8_split(np.asarray(ds.data), np.asarray(ds.targets)))
        classes = list(ds.classes)
    return Source(classes, splits[0], splits[1])


def class_folders(folder: Path) -> list[str]:
    """Class names of an image folder, as ``torchvision.datasets.folder.find_classes`` sorts them."""
    base = split_folders(folder)[0]
    return sorted(e.name for e in os.scandir(base) if e.is_dir())


def split_folders(folder: Path) -> tuple[Path, Path | None]:
    """(train folder, test folder or None): Imagenette-style ``train/`` + ``val/`` or plain."""
    if not folder.is_dir():
        raise SweepError(
            f"dataset.folder must be an existing folder of class sub-folders (<folder>/<class>/<image>); "
            f"got {str(folder.absolute())!r} (not found)"
        )
    if (folder / "train").is_dir():
        for name in TEST_SPLIT_NAMES:
            if (folder / name).is_dir():
                return folder / "train", folder / name
    return folder, None


def read_image_folder(folder: Path, size: tuple[int, int], grayscale: bool) -> Source:
    """Class sub-folders of images, resized to ``size`` (H, W) by torchvision's ``ImageFolder``."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    train_dir, test_dir = split_folders(folder)
    steps = [transforms.Grayscale()] if grayscale else []
    transform = transforms.Compose([*steps, transforms.Resize(size)])
    splits: list[Split] = []
    classes: list[str] = []
    for d in (train_dir, test_dir):
        if d is None:
            continue
        try:
            ds = ImageFolder(str(d), transform=transform)
        except FileNotFoundError as err:
            raise SweepError(
                f"dataset.folder must hold class sub-folders with images ({', '.join(IMG_EXTENSIONS)}); "
                f"{d}: {err}"
            ) from None
        if classes and ds.classes != classes:
            raise SweepError(
                f"dataset.folder splits must have the same class folders; {train_dir} has {classes}, {d} has {ds.classes}"
            )
        classes = ds.classes
        shape = tuple(size) if grayscale else (*size, 3)
        splits.append(Split(np.asarray(ds.targets, dtype=np.int64), _image_fetcher(ds, shape)))
    return Source(classes, splits[0], splits[1] if len(splits) > 1 else None)


def _image_fetcher(ds, shape: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    def fetch(rows: np.ndarray) -> np.ndarray:
        images = []
        for i in rows:
            try:
                img, _ = ds[int(i)]
            except OSError as err:
                raise SweepError(
                    f"dataset.folder image {ds.samples[int(i)][0]} must be a readable image; got {err}"
                ) from None
            images.append(np.asarray(img, dtype=np.float64) / 255.0)
        if not images:
            return np.zeros((0, *shape), dtype=np.float64)
        return np.stack(images)

    return fetch
