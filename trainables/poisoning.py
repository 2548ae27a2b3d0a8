"""Poisoning strategies (SCIENCE.md §2).

A strategy takes the clean training set, a fitted trigger, the target label index and the result's
random generator, and returns a `Poisoned` training set with a boolean mask of the poisoned rows
(the learning curves weight those rows by β) and extra columns for the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from pydantic import Field

from trainables.components import Component, Params, Registry
from trainables.triggers import Trigger

Rate = Annotated[float, Field(ge=0.0, lt=1.0)]


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
    ) -> Poisoned:
        raise NotImplementedError


class DirtyLabelParams(Params):
    poison_rate: Rate = 0.1


def dirty_label_candidates(y: np.ndarray, target: int, n_classes: int) -> np.ndarray:
    """Binary: every sample; multiclass: samples not of the target class."""
    if n_classes <= 2:
        return np.arange(len(y))
    return np.flatnonzero(y != target)


class DirtyLabel(Poisoning):
    """Dirty-label, in place: int(p·n) samples get the trigger and label t; n stays the same."""

    name = "dirty_label"
    Params = DirtyLabelParams

    def poison(self, X, y, trigger, target, n_classes, rng):
        n = len(y)
        candidates = dirty_label_candidates(y, target, n_classes)
        k = min(int(self.params.poison_rate * n), len(candidates))
        chosen = np.sort(rng.choice(candidates, size=k, replace=False))
        Xp, yp = np.array(X, dtype=np.float64, copy=True), np.array(y, copy=True)
        Xp[chosen] = trigger.apply(Xp[chosen], rng)
        yp[chosen] = target
        mask = np.zeros(n, dtype=bool)
        mask[chosen] = True
        return Poisoned(Xp, yp, mask, {"effective_poison_rate": k / n if n else 0.0})


POISONINGS = Registry("poisoning", DirtyLabel)


def make_poisoning(config: dict) -> Poisoning:
    return POISONINGS.get_class(config["poisoning"], "poisoning").from_config(config)
