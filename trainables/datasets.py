"""Datasets: images in [0, 1], a seeded stratified train/test split, labels as class indices.

The embedded default is scikit-learn's bundled handwritten digits (8×8 grey), which needs no
download. A `Dataset` keeps the class names, so a spec can say ``classes: [7, 1]`` and
``target: 1`` while the learners see label indices 0..K-1 in the order of ``classes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.model_selection import train_test_split

from sweep.errors import SweepError


class DatasetSpec(BaseModel):
    """The ``dataset`` section of a spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["digits"] = "digits"
    classes: list[Any] | None = None
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3
    split_seed: int = 0
    n_train: Annotated[int, Field(ge=2)] | None = None
    n_test: Annotated[int, Field(ge=1)] | None = None


@dataclass
class Dataset:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.X_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def class_index(self, name: object, field: str = "target") -> int:
        for i, c in enumerate(self.classes):
            if c == name or str(c) == str(name):
                return i
        raise SweepError(f"{field} must be one of the classes {self.classes}; got {name!r}")


#: image shape and class names per dataset, known without loading (for validation)
DATASET_INFO: dict[str, dict] = {
    "digits": {"image_shape": (8, 8), "classes": list(range(10))},
}


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float64) / 16.0, d.target.astype(np.int64)


def _select_classes(X, y, all_classes, classes, field="dataset.classes"):
    if classes is None:
        classes = list(all_classes)
    if len(classes) < 2:
        raise SweepError(f"{field} must name at least 2 classes; got {classes!r}")
    idx = []
    for c in classes:
        match = [i for i, a in enumerate(all_classes) if a == c or str(a) == str(c)]
        if not match:
            raise SweepError(f"{field} must be classes of the dataset {list(all_classes)}; got {c!r}")
        idx.append(match[0])
    if len(set(idx)) != len(idx):
        raise SweepError(f"{field} must not repeat a class; got {classes!r}")
    keep = np.isin(y, idx)
    remap = {orig: new for new, orig in enumerate(idx)}
    y_new = np.array([remap[v] for v in y[keep]], dtype=np.int64)
    return X[keep], y_new, [all_classes[i] for i in idx]


def _subsample(X, y, n, seed):
    if n is None or n >= len(y):
        return X, y
    Xs, _, ys, _ = train_test_split(X, y, train_size=n, stratify=y, random_state=seed)
    return Xs, ys


def load_dataset(spec: DatasetSpec) -> Dataset:
    """Load, select classes, split (seeded, stratified) and optionally subsample."""
    if spec.name == "digits":
        X, y = _load_digits()
        all_classes = DATASET_INFO["digits"]["classes"]
    else:  # pragma: no cover - the Literal keeps other names out
        raise SweepError(f"dataset.name must be one of {sorted(DATASET_INFO)}; got {spec.name!r}")
    X, y, classes = _select_classes(X, y, all_classes, spec.classes)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=spec.test_fraction, stratify=y, random_state=spec.split_seed
    )
    X_tr, y_tr = _subsample(X_tr, y_tr, spec.n_train, spec.split_seed)
    X_te, y_te = _subsample(X_te, y_te, spec.n_test, spec.split_seed)
    return Dataset(spec.name, X_tr, y_tr, X_te, y_te, classes)
