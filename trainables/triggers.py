"""Backdoor triggers (SCIENCE.md §3).

A trigger is built from its parameters, ``fit`` on the training images once per result (seeding
its pattern, or learning a PCA basis), then ``apply``-ed to any batch of images of the same shape.
Images are float arrays in [0, 1] of shape (n, H, W) or (n, H, W, C); the output has the same shape
and stays in [0, 1]. ``check(image_shape)`` refuses a trigger that does not fit the image before
anything runs.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from sweep.errors import SweepError
from trainables.components import Component, Params, Registry

Corner = Literal["bottom_right", "bottom_left", "top_right", "top_left"]
Pattern = Literal["random", "checkerboard", "solid"]


class Trigger(Component):
    """Base: subclasses implement ``_fit`` (optional), ``_apply`` and ``check``."""

    def check(self, image_shape: tuple[int, ...]) -> None:
        """Raise `SweepError` when the trigger cannot be applied to images of this shape."""

    def fit(self, X_train: np.ndarray, rng: np.random.Generator) -> Trigger:
        self.image_shape_ = tuple(X_train.shape[1:])
        self.check(self.image_shape_)
        self._fit(X_train, rng)
        return self

    def _fit(self, X_train: np.ndarray, rng: np.random.Generator) -> None:
        pass

    def apply(self, X: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if len(X) == 0:
            return X.copy()
        return np.clip(self._apply(X.copy(), rng), 0.0, 1.0)

    def _apply(self, X: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        raise NotImplementedError

    def mask(self) -> np.ndarray:
        """Boolean (H, W) map of the pixels the trigger may change (for tests and plots)."""
        probe = np.zeros((2, *self.image_shape_))
        probe[1] = 1.0
        out = self.apply(probe, np.random.default_rng(0))
        changed = (out != probe).reshape(2, *self.image_shape_[:2], -1).any(axis=(0, 3))
        return changed


def _channels(image_shape: tuple[int, ...]) -> int:
    return image_shape[2] if len(image_shape) == 3 else 1


def make_pattern(kind: str, size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """An s×s(×C) pattern: seeded uniform noise, a 0/1 checkerboard, or solid white."""
    if kind == "random":
        pat = rng.uniform(0.0, 1.0, size=(size, size, channels))
    elif kind == "checkerboard":
        board = (np.add.outer(np.arange(size), np.arange(size)) % 2 == 0).astype(np.float64)
        pat = np.repeat(board[:, :, None], channels, axis=2)
    else:
        pat = np.ones((size, size, channels))
    return pat


def corner_slices(corner: str, size: int, height: int, width: int) -> tuple[slice, slice]:
    rows = slice(height - size, height) if corner.startswith("bottom") else slice(0, size)
    cols = slice(width - size, width) if corner.endswith("right") else slice(0, size)
    return rows, cols


def paste(X: np.ndarray, pattern: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Replace X[:, rows, cols] by the pattern on grey or colour images."""
    if X.ndim == 3:
        X[:, rows, cols] = pattern[:, :, 0]
    else:
        X[:, rows, cols, :] = pattern
    return X


class PatchParams(Params):
    trigger_size: Annotated[int, Field(ge=1)] = 3
    pattern: Pattern = "random"
    corner: Corner = "bottom_right"


class PatchTrigger(Trigger):
    """BadNets: an s×s pattern replacing the pixels at a corner (α = 1)."""

    name = "patch"
    Params = PatchParams

    def check(self, image_shape: tuple[int, ...]) -> None:
        s = self.params.trigger_size
        h, w = image_shape[:2]
        if s > min(h, w):
            raise SweepError(
                f"trigger_size must be at most the image side {min(h, w)} "
                f"(images are {h}x{w}); got {s}"
            )

    def _fit(self, X_train: np.ndarray, rng: np.random.Generator) -> None:
        p = self.params
        self.pattern_ = make_pattern(p.pattern, p.trigger_size, _channels(self.image_shape_), rng)

    def _apply(self, X: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        h, w = X.shape[1:3]
        rows, cols = corner_slices(self.params.corner, self.params.trigger_size, h, w)
        return paste(X, self.pattern_, rows, cols)


TRIGGERS = Registry("trigger", PatchTrigger)


def make_trigger(config: dict) -> Trigger:
    return TRIGGERS.get_class(config["trigger"], "trigger").from_config(config)
