"""Backdoor triggers (docs/science.md §3).

A trigger is built from its parameters, ``fit`` on the training images once per result (seeding
its pattern, or learning a PCA basis), then ``apply``-ed to any batch of images of the same shape.
Images are float arrays in [0, 1] of shape (n, H, W) or (n, H, W, C); the output has the same shape
and stays in [0, 1]. ``check(image_shape)`` refuses a trigger that does not fit the image (or a
``pattern_image`` that is not an image) before anything runs: spec validation calls it through
``check_cell`` once per combination of the values of the keys in ``check_keys``.

Quantities on the pixel scale (``amplitude``, ``visibility``) are given on the 0–255 scale, like
the clean-label ``epsilon``, and divided by 255 here. Additive triggers (sine, low variance) follow
the general form p = (1−α)·x + α·T(x) with T(x) = x + v, which is the same as adding α·v:
α = 1 is the plain additive trigger of the papers, α = 0 the identity; p is clipped to [0, 1] once,
at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator

from backdoor_sweep.errors import SweepError, shown
from trainables.attacks.patterns import (
    centre_slices,
    channels_of,
    checkerboard,
    corner_slices,
    even_grid,
    four_corner_layout,
    full_pattern,
    load_image,
    low_variance_basis,
    make_pattern,
    paste,
    sine_rows,
    x_mask,
)
from trainables.components import Component, Params, Registry, parse_params, with_origin

Corner = Literal["bottom_right", "bottom_left", "top_right", "top_left"]
Pattern = Literal["random", "checkerboard", "solid"]
FullPattern = Literal["random", "checkerboard", "solid", "image"]
Alpha = Annotated[float, Field(ge=0.0, le=1.0)]
Size = Annotated[int, Field(ge=1)]
Pixel255 = Annotated[float, Field(ge=0.0, le=255.0)]

#: share of the variance the low-variance trigger's trailing principal components must explain
LOW_VARIANCE_FRACTION = 0.005
#: images used at most to fit the low-variance PCA (a seeded subsample above that)
LOW_VARIANCE_MAX_SAMPLES = 5000

__all__ = ["TRIGGERS", "Trigger", "make_trigger", "make_pattern", "corner_slices", "paste"]


class Trigger(Component):
    """Base: subclasses implement ``check``, ``_fit`` (optional) and ``_apply``.

    ``_apply`` always sees a float copy of shape (n, H, W, C) (grey images get C = 1), so each
    trigger has one code path for grey and colour images.
    """

    def check(self, image_shape: tuple[int, ...]) -> None:
        """Raise `SweepError` when the trigger cannot be applied to images of this shape."""

    @classmethod
    def check_cell(cls, cell, origins, info):
        """`check` on the dataset's image shape, the message naming where the user wrote the key."""
        trigger = cls(parse_params(cls, cell, origins))
        try:
            trigger.check(info.image_shape)
        except SweepError as err:
            raise SweepError(with_origin(str(err), origins)) from None

    def fit(self, X_train: np.ndarray, rng: np.random.Generator) -> Trigger:
        shape = tuple(np.shape(X_train)[1:])
        if len(shape) not in (2, 3):
            raise SweepError(
                f"images must have shape (n, H, W) or (n, H, W, C); got {np.shape(X_train)}"
            )
        self.image_shape_ = shape
        self.check(shape)
        self._fit(np.asarray(X_train, dtype=np.float64), rng)
        return self

    def _fit(self, X_train: np.ndarray, rng: np.random.Generator) -> None:
        pass

    def apply(self, X: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if len(X) == 0:
            return X.copy()
        if tuple(X.shape[1:]) != self.image_shape_:
            raise ValueError(
                f"images must have the shape the trigger was fit on {self.image_shape_}; got {X.shape[1:]}"
            )
        X4 = X.reshape(*X.shape[:3], -1).copy()
        out = np.clip(self._apply(X4, rng), 0.0, 1.0)
        return out.reshape(X.shape)

    def _apply(self, X: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        raise NotImplementedError

    def mask(self) -> np.ndarray:
        """Boolean (H, W) map of the pixels the trigger changed on an all-black and an all-white image."""
        probe = np.zeros((2, *self.image_shape_))
        probe[1] = 1.0
        out = self.apply(probe, np.random.default_rng(0))
        return (out != probe).reshape(2, *self.image_shape_[:2], -1).any(axis=(0, 3))

    @property
    def channels_(self) -> int:
        return channels_of(self.image_shape_)


def _check_side(size: int, image_shape: tuple[int, ...], times: int = 1, why: str = "") -> None:
    h, w = image_shape[:2]
    limit = min(h, w) // times
    if size > limit:
        what = "the image side" if times == 1 else f"1/{times} of the image side"
        raise SweepError(
            f"trigger_size must be at most {what}, {limit} (images are {h}x{w}{why}); got {size}"
        )


def _check_pattern_image(params: Params, image_shape: tuple[int, ...]) -> None:
    """``pattern_image`` is given exactly with ``pattern: image``, and opens as an image."""
    if params.pattern == "image" and params.pattern_image is None:
        raise SweepError("pattern_image must name an image file when pattern is 'image'; got None")
    if params.pattern != "image" and params.pattern_image is not None:
        raise SweepError(
            f"pattern_image is read only when pattern is 'image'; got pattern {params.pattern!r}"
        )
    if params.pattern_image is not None:
        path = Path(params.pattern_image)
        if not path.is_file():
            why = "a folder" if path.is_dir() else "not found"
            raise SweepError(
                f"pattern_image must be an existing image file; got {shown(str(path))} ({why})"
            )
        h, w = image_shape[:2]
        load_image(params.pattern_image, h, w, channels_of(image_shape))  # decodes, or one line


# -- square triggers --------------------------------------------------------------------------
class PatchParams(Params):
    trigger_size: Size = 3
    pattern: Pattern = "random"
    corner: Corner = "bottom_right"


class PatchTrigger(Trigger):
    """BadNets: an s×s pattern replacing the pixels at a corner (α = 1)."""

    name = "patch"
    Params = PatchParams
    check_keys = ("trigger_size",)

    def check(self, image_shape):
        _check_side(self.params.trigger_size, image_shape)

    def _fit(self, X_train, rng):
        p = self.params
        self.pattern_ = make_pattern(p.pattern, p.trigger_size, self.channels_, rng)

    def _apply(self, X, rng):
        h, w = X.shape[1:3]
        rows, cols = corner_slices(self.params.corner, self.params.trigger_size, h, w)
        return paste(X, self.pattern_, rows, cols)


class RandomSquareParams(Params):
    trigger_size: Size = 3
    pattern: Pattern = "random"


class RandomSquareTrigger(Trigger):
    """The patch pattern at a random location per sample, drawn from the generator ``apply`` gets.

    Without a generator the locations come from a seed drawn at ``fit``, so they are reproducible.
    """

    name = "random_square"
    Params = RandomSquareParams
    check_keys = ("trigger_size",)

    def check(self, image_shape):
        _check_side(self.params.trigger_size, image_shape)

    def _fit(self, X_train, rng):
        p = self.params
        self.pattern_ = make_pattern(p.pattern, p.trigger_size, self.channels_, rng)
        self.location_seed_ = int(rng.integers(2**32))

    def _apply(self, X, rng):
        rng = rng if rng is not None else np.random.default_rng(self.location_seed_)
        s = self.params.trigger_size
        h, w = X.shape[1:3]
        tops = rng.integers(0, h - s + 1, size=len(X))
        lefts = rng.integers(0, w - s + 1, size=len(X))
        for i, (top, left) in enumerate(zip(tops, lefts, strict=True)):
            X[i, top : top + s, left : left + s, :] = self.pattern_
        return X


class FourCornerParams(Params):
    trigger_size: Size = 3
    pattern: Pattern = "random"


class FourCornerTrigger(Trigger):
    """The patch pattern at the top left and its mirror images in the other three corners."""

    name = "four_corner"
    Params = FourCornerParams
    check_keys = ("trigger_size",)

    def check(self, image_shape):
        _check_side(
            self.params.trigger_size,
            image_shape,
            times=2,
            why="; the four corners must not overlap",
        )

    def _fit(self, X_train, rng):
        p = self.params
        self.pattern_ = make_pattern(p.pattern, p.trigger_size, self.channels_, rng)

    def _apply(self, X, rng):
        h, w = X.shape[1:3]
        for rows, cols, pat in four_corner_layout(self.pattern_, h, w):
            paste(X, pat, rows, cols)
        return X


class XParams(Params):
    trigger_size: Annotated[int, Field(ge=3)] = 3


class XTrigger(Trigger):
    """A white 'x' (both diagonals of an s×s square) at the image centre, on every channel."""

    name = "x"
    Params = XParams
    check_keys = ("trigger_size",)

    def check(self, image_shape):
        _check_side(self.params.trigger_size, image_shape)

    def _apply(self, X, rng):
        h, w = X.shape[1:3]
        rows, cols = centre_slices(self.params.trigger_size, h, w)
        block = X[:, rows, cols, :]
        block[:, x_mask(self.params.trigger_size), :] = 1.0
        return X


class ReducedAmplitudeParams(Params):
    trigger_size: Size = 3
    corner: Corner = "bottom_right"
    amplitude: Pixel255 = 64.0


class ReducedAmplitudeTrigger(Trigger):
    """An s×s black/white checkerboard (default 3×3) added at a corner with amplitude a.

    White squares (top-left one included) get +a/255, black ones −a/255, on every channel, then
    clipped: a = 255 gives the full-contrast pattern on any image.
    """

    name = "reduced_amplitude"
    Params = ReducedAmplitudeParams
    check_keys = ("trigger_size",)

    def check(self, image_shape):
        _check_side(self.params.trigger_size, image_shape)

    def _apply(self, X, rng):
        p = self.params
        h, w = X.shape[1:3]
        rows, cols = corner_slices(p.corner, p.trigger_size, h, w)
        signs = 2.0 * checkerboard(p.trigger_size, p.trigger_size) - 1.0
        X[:, rows, cols, :] += (p.amplitude / 255.0) * signs[:, :, None]
        return X


# -- full-image triggers ----------------------------------------------------------------------
class FullPatternParams(Params):
    """A full-image pattern; ``pattern_image`` (read when ``pattern: image``) is a path made
    absolute against the working directory, so Ray workers in other directories find the file."""

    pattern: FullPattern = "random"
    pattern_image: str | None = None

    @field_validator("pattern_image")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        return None if v is None else str(Path(v).expanduser().resolve())


class BlendParams(FullPatternParams):
    alpha: Alpha = 0.2


class BlendTrigger(Trigger):
    """A full-image pattern P mixed in: p = (1−α)·x + α·P (Chen et al.'s blended injection).

    P is seeded uniform noise (default), a full-image checkerboard, solid white, or an image file
    (``pattern: image`` with ``pattern_image: path``) converted and resized to the images.
    """

    name = "blend"
    Params = BlendParams
    check_keys = ("pattern", "pattern_image")

    def check(self, image_shape):
        _check_pattern_image(self.params, image_shape)

    def _fit(self, X_train, rng):
        h, w = self.image_shape_[:2]
        p = self.params
        self.pattern_ = full_pattern(p.pattern, h, w, self.channels_, rng, p.pattern_image)

    def _apply(self, X, rng):
        a = self.params.alpha
        return (1.0 - a) * X + a * self.pattern_


class SineParams(Params):
    alpha: Alpha = 0.1
    amplitude: Pixel255 = 102.0
    frequency: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.025


class SineTrigger(Trigger):
    """SIG: v(i, j) = Δ·sin(2π·j·f), the same on every row and channel, added with weight α.

    Δ = amplitude/255 and f = ``frequency`` in cycles per pixel column (Barni et al.'s f over the
    width W). The defaults, Δ = 102/255 = 0.4 and f = 0.025, give v = 0.4·sin(0.05·π·j). With
    T(x) = x + v the general form gives p = x + α·v, clipped; α = 1 is Barni et al.'s additive SIG.
    """

    name = "sine"
    Params = SineParams

    def _apply(self, X, rng):
        p = self.params
        v = sine_rows(X.shape[2], p.amplitude / 255.0, p.frequency)
        return X + p.alpha * v[None, None, :, None]


class LowVarianceParams(FullPatternParams):
    alpha: Alpha = 0.1


class LowVarianceTrigger(Trigger):
    """A pattern living in the training images' low-variance subspace, added with weight α.

    PCA on the flattened training images; the fewest trailing components that together explain
    ≥ 0.5% of the variance span the subspace. An image z that is not in the training set (``pattern``:
    seeded uniform noise by default, or an image file) is centred by the training mean, projected
    onto that subspace and mapped back, v = Uᵀ·U·(z − mean), then scaled so max |v| = 1. As for the
    sine, T(x) = x + v, so p = x + α·v clipped: α is the largest change of a pixel before clipping.
    """

    name = "low_variance"
    Params = LowVarianceParams
    check_keys = ("pattern", "pattern_image")

    def check(self, image_shape):
        _check_pattern_image(self.params, image_shape)

    def _fit(self, X_train, rng):
        h, w = self.image_shape_[:2]
        p = self.params
        mean, basis = low_variance_basis(
            X_train, LOW_VARIANCE_FRACTION, LOW_VARIANCE_MAX_SAMPLES, rng
        )
        z = full_pattern(p.pattern, h, w, self.channels_, rng, p.pattern_image)
        v = basis.T @ (basis @ (z.reshape(-1) - mean))
        peak = float(np.max(np.abs(v)))
        if peak == 0.0:
            raise SweepError(
                f"pattern {p.pattern!r} has no component in the training images' low-variance subspace; choose another pattern"
            )
        self.n_components_ = len(basis)
        self.pattern_ = (v / peak).reshape(h, w, self.channels_)

    def _apply(self, X, rng):
        return X + self.params.alpha * self.pattern_


class GridParams(Params):
    visibility: Pixel255 = 25.0


class GridTrigger(Trigger):
    """Invisible additive grid: c_m/255 added at every (even row, even column) on all channels."""

    name = "grid"
    Params = GridParams

    def _apply(self, X, rng):
        h, w = X.shape[1:3]
        return X + (self.params.visibility / 255.0) * even_grid(h, w)[None, :, :, None]


TRIGGERS = Registry(
    "trigger",
    PatchTrigger,
    RandomSquareTrigger,
    BlendTrigger,
    SineTrigger,
    LowVarianceTrigger,
    GridTrigger,
    ReducedAmplitudeTrigger,
    FourCornerTrigger,
    XTrigger,
)


def make_trigger(config: dict) -> Trigger:
    return TRIGGERS.get_class(config["trigger"], "trigger").from_config(config)
