"""Poisoning strategies (docs/science.md §2).

A strategy takes the clean training set, a fitted trigger, the target label index, the number of
classes, the result's random generator and (optionally) the class names, and returns a `Poisoned`
training set with a boolean mask of the poisoned rows (the learning curves weight those rows by β)
and extra columns for the store. Every strategy stores

- ``effective_poison_rate``: poisoned rows / rows of the poisoned training set;
- ``poison_per_class``: a JSON object {class name: number of poisoned rows made from a sample of
  that class}, every class listed, in class order.

Counts are floor(rate·N) (with a 1e-9 guard so 0.29·100 gives 29, not 28 through rounding).
Spec validation calls a strategy's ``check_cell`` (e.g. a supplant source class that is not the
target) once per combination of the values of its ``check_keys``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from pydantic import Field, field_validator

from backdoor_sweep.errors import SweepError, shown
from trainables.attacks.clean_label import CleanLabelParams, check_hardening, harden
from trainables.attacks.triggers import Trigger
from trainables.components import Component, Params, Registry, parse_params, with_origin

Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
ClassRate = Annotated[float, Field(ge=0.0, le=1.0)]


@dataclass
class Poisoned:
    X: np.ndarray
    y: np.ndarray
    is_poison: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n_poison(self) -> int:
        return int(self.is_poison.sum())


class Poisoning(Component):
    def poison(
        self,
        X: np.ndarray,
        y: np.ndarray,
        trigger: Trigger,
        target: int,
        n_classes: int,
        rng: np.random.Generator,
        classes: list | None = None,
    ) -> Poisoned:
        """Poison (X, y); ``classes`` are the class names of the label indices (default 0..K-1)."""
        raise NotImplementedError


def rate_count(rate: float, n: int) -> int:
    """floor(rate·n), robust to the rounding of rate·n in floating point."""
    return int(np.floor(rate * n + 1e-9))


def per_class_json(source_labels: np.ndarray, n_classes: int, classes: list | None) -> str:
    """{class name: count} of the original labels of the poisoned rows, every class listed."""
    names = classes if classes is not None else list(range(n_classes))
    counts = np.bincount(np.asarray(source_labels, dtype=np.int64), minlength=n_classes)
    return json.dumps({str(c): int(k) for c, k in zip(names, counts, strict=False)})


def largest_remainder(total: int, sizes: np.ndarray) -> np.ndarray:
    """Split ``total`` in proportion to ``sizes`` into integers that add up to ``total``.

    Each part gets floor(total·N_c/ΣN); the units left over go one each to the parts with the
    largest remainders, ties broken by order (first listed first). Exact integer arithmetic.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    s = int(sizes.sum())
    if total == 0 or s == 0:
        return np.zeros(len(sizes), dtype=np.int64)
    base, rem = np.divmod(total * sizes, s)
    left = total - int(base.sum())
    order = np.lexsort((np.arange(len(sizes)), -rem))
    base[order[:left]] += 1
    return base


class DirtyLabelParams(Params):
    poison_rate: Rate = 0.1


def dirty_label_candidates(y: np.ndarray, target: int, n_classes: int) -> np.ndarray:
    """Binary: every sample; multiclass: samples not of the target class."""
    if n_classes <= 2:
        return np.arange(len(y))
    return np.flatnonzero(y != target)


def _poisoned(Xp, yp, rows, source_labels, n_classes, classes, **extra) -> Poisoned:
    """The poisoned set with its mask and the columns every strategy stores: the effective
    poisoning rate (poisoned rows ÷ rows of the final training set) and the count per source class."""
    mask = np.zeros(len(yp), dtype=bool)
    mask[rows] = True
    info = {
        "effective_poison_rate": int(mask.sum()) / len(yp) if len(yp) else 0.0,
        "poison_per_class": per_class_json(source_labels, n_classes, classes),
        **extra,
    }
    return Poisoned(Xp, yp, mask, info)


def _dirty_label_choice(y, target, n_classes, rate, rng) -> np.ndarray:
    candidates = dirty_label_candidates(y, target, n_classes)
    k = min(rate_count(rate, len(y)), len(candidates))
    return np.sort(rng.choice(candidates, size=k, replace=False))


class DirtyLabel(Poisoning):
    """Dirty-label, in place: int(p·n) samples get the trigger and label t; n stays the same."""

    name = "dirty_label"
    Params = DirtyLabelParams

    def poison(self, X, y, trigger, target, n_classes, rng, classes=None):
        chosen = _dirty_label_choice(y, target, n_classes, self.params.poison_rate, rng)
        Xp, yp = np.array(X, dtype=np.float64, copy=True), np.array(y, copy=True)
        Xp[chosen] = trigger.apply(Xp[chosen], rng)
        yp[chosen] = target
        return _poisoned(Xp, yp, chosen, y[chosen], n_classes, classes)


class DirtyLabelAdded(Poisoning):
    """Dirty-label, added: the same int(p·n) triggered, relabelled copies appended; n grows to n + k.

    The effective poison rate is k / (n + k), the poisoned share of the enlarged training set.
    """

    name = "dirty_label_added"
    Params = DirtyLabelParams

    def poison(self, X, y, trigger, target, n_classes, rng, classes=None):
        X = np.asarray(X, dtype=np.float64)
        chosen = _dirty_label_choice(y, target, n_classes, self.params.poison_rate, rng)
        copies = trigger.apply(X[chosen], rng)
        Xp = np.concatenate([X, copies])
        yp = np.concatenate(
            [np.asarray(y), np.full(len(chosen), target, dtype=np.asarray(y).dtype)]
        )
        appended = np.arange(len(y), len(yp))
        return _poisoned(Xp, yp, appended, y[chosen], n_classes, classes)


class SupplantParams(Params):
    poison_rate: ClassRate = 0.1
    #: "all" (many-to-one: every class but the target) or one class name (one-to-one)
    source: str = "all"

    @field_validator("source", mode="before")
    @classmethod
    def _as_text(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def source_index(source: str, classes: list | None, n_classes: int) -> int:
    """The label index of a source class given by name (or by index when no names are known)."""
    names = classes if classes is not None else list(range(n_classes))
    for i, c in enumerate(names):
        if str(c) == str(source):
            return i
    raise SweepError(f"source must be 'all' or one of the classes {names}; got {source!r}")


class Supplant(Poisoning):
    """Supplant: floor(λ·N_t) target-class samples are replaced by triggered source-class samples.

    Class balance is kept: the replaced rows keep label t but now hold a triggered copy of a
    sample of a source class c ∈ K, and the clean originals stay in their classes. Source class c
    contributes P_c = floor(λ·N_t)·N_c/Σ_{k∈K} N_k rows, rounded by `largest_remainder` (ties to
    the class listed first). Samples of t are never triggered.
    """

    name = "supplant"
    Params = SupplantParams
    check_keys = ("source", "target")

    @classmethod
    def check_cell(cls, cell, origins, info):
        """A one-to-one source is a selected class other than the target."""
        src = str(parse_params(cls, cell, origins).source)
        if src == "all":
            return
        where = origins.get("source", "source")
        pos = info.position(src)
        if pos is None:
            raise SweepError(
                f"{where} must be 'all' or one of the classes {info.classes}; got {shown(src)}"
            )
        if pos == info.position(cell["target"]):
            raise SweepError(
                f"{where} must differ from the target class {shown(cell['target'])}; got {shown(src)}"
            )

    def poison(self, X, y, trigger, target, n_classes, rng, classes=None):
        y = np.asarray(y)
        if self.params.source == "all":
            sources = [c for c in range(n_classes) if c != target]
        else:
            src = source_index(self.params.source, classes, n_classes)
            if src == target:
                raise SweepError(
                    f"source must differ from the target class; got {self.params.source!r}"
                )
            sources = [src]
        target_rows = np.flatnonzero(y == target)
        m = rate_count(self.params.poison_rate, len(target_rows))
        sizes = np.array([np.sum(y == c) for c in sources])
        counts = largest_remainder(m, sizes)
        for c, k, size in zip(sources, counts, sizes, strict=True):
            if k > size:
                name = classes[c] if classes is not None else c
                raise SweepError(
                    f"poison_rate {self.params.poison_rate} needs {k} samples of source class {name!r}, "
                    f"which has {size}; lower poison_rate"
                )
        replaced = np.sort(rng.choice(target_rows, size=m, replace=False))
        drawn = [
            rng.choice(np.flatnonzero(y == c), size=k, replace=False)
            for c, k in zip(sources, counts, strict=True)
        ]
        donors = np.concatenate(drawn).astype(np.int64) if drawn else np.zeros(0, dtype=np.int64)
        Xp = np.array(X, dtype=np.float64, copy=True)
        Xp[replaced] = trigger.apply(Xp[donors], rng)
        return _poisoned(Xp, y.copy(), replaced, y[donors], n_classes, classes)


class CleanLabel(Poisoning):
    """Clean-label: floor(rate·N_t) samples of class t are hardened, then triggered; labels unchanged.

    Hardening (PGD against a surrogate trained on the clean training set, Gaussian noise, or
    interpolation towards another class in pixels or in a generator's latent space) is in
    `trainables.attacks.clean_label`.
    """

    name = "clean_label"
    Params = CleanLabelParams
    check_keys = ("hardening",)

    @classmethod
    def check_cell(cls, cell, origins, info):
        """A hardening that cannot serve the dataset's images (gan_interpolation: grey, square)."""
        try:
            check_hardening(parse_params(cls, cell, origins), info.image_shape)
        except SweepError as err:
            raise SweepError(with_origin(str(err), origins)) from None

    def poison(self, X, y, trigger, target, n_classes, rng, classes=None):
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
        target_rows = np.flatnonzero(y == target)
        k = rate_count(self.params.poison_rate, len(target_rows))
        chosen = np.sort(rng.choice(target_rows, size=k, replace=False))
        hardened, hinfo = harden(X[chosen], target, self.params, X, y, n_classes, rng)
        Xp = X.copy()
        Xp[chosen] = trigger.apply(hardened, rng)
        return _poisoned(Xp, y.copy(), chosen, y[chosen], n_classes, classes, **hinfo)


POISONINGS = Registry("poisoning", DirtyLabel, DirtyLabelAdded, Supplant, CleanLabel)


def make_poisoning(config: dict) -> Poisoning:
    return POISONINGS.get_class(config["poisoning"], "poisoning").from_config(config)
