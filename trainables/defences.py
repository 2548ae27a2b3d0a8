"""Defences (SCIENCE.md §8): how the defender trains on the (possibly poisoned) training set.

A defence wraps the fit: ``train(learner, poisoned, data, rng)`` fits ``learner`` and returns extra
columns for the store. ``none`` simply fits on everything. Regularisation strength (C, γ, weight
decay) is a learner hyperparameter, not a defence.
"""

from __future__ import annotations

import numpy as np

from trainables.components import Component, Registry
from trainables.datasets import Dataset
from trainables.poisoning import Poisoned


class Defence(Component):
    def train(self, learner, poisoned: Poisoned, data: Dataset, rng: np.random.Generator) -> dict:
        """Fit ``learner`` in place; return extra result columns."""
        raise NotImplementedError


class NoDefence(Defence):
    """Train on the whole (poisoned) training set."""

    name = "none"

    def train(self, learner, poisoned, data, rng):
        learner.fit(poisoned.X, poisoned.y)
        return {}


DEFENCES = Registry("defence", NoDefence)


def make_defence(config: dict) -> Defence:
    return DEFENCES.get_class(config.get("defence", "none"), "defence").from_config(config)
