"""Pattern arrays and their placement, shared by the triggers of `trainables.attacks.triggers`.

Everything here is a pure function of its arguments. Patterns are float arrays in [0, 1] of shape
(rows, cols, C) — grey images use C = 1 — so one code path serves grey and colour images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backdoor_sweep.errors import SweepError, cut, shown

#: the patterns a square (patch-like) trigger can carry
SQUARE_PATTERNS = ("random", "checkerboard", "solid")
#: the patterns a full-image trigger can carry: the square ones drawn image-sized, or an image file
FULL_PATTERNS = (*SQUARE_PATTERNS, "image")


def channels_of(image_shape: tuple[int, ...]) -> int:
    """C for (H, W, C) images, 1 for grey (H, W)."""
    return image_shape[2] if len(image_shape) == 3 else 1


def checkerboard(rows: int, cols: int) -> np.ndarray:
    """A 0/1 board with 1 (white) where row + column is even, so the top-left pixel is white."""
    return (np.add.outer(np.arange(rows), np.arange(cols)) % 2 == 0).astype(np.float64)


def make_pattern(kind: str, size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """An s×s×C pattern: seeded uniform noise, a 0/1 checkerboard, or solid white."""
    return full_pattern(kind, size, size, channels, rng)


def full_pattern(
    kind: str,
    height: int,
    width: int,
    channels: int,
    rng: np.random.Generator,
    image_path: str | None = None,
) -> np.ndarray:
    """An H×W×C pattern: ``random`` (seeded uniform), ``checkerboard``, ``solid`` or ``image``.

    Random noise differs per channel; the checkerboard and solid patterns are the same on every
    channel. ``image`` reads ``image_path`` and resizes it to H×W (see `load_image`).
    """
    if kind == "random":
        return rng.uniform(0.0, 1.0, size=(height, width, channels))
    if kind == "checkerboard":
        return np.repeat(checkerboard(height, width)[:, :, None], channels, axis=2)
    if kind == "solid":
        return np.ones((height, width, channels))
    if kind == "image":
        if image_path is None:
            raise SweepError(
                "pattern_image must name an image file when pattern is 'image'; got None"
            )
        return load_image(image_path, height, width, channels)
    raise SweepError(f"pattern must be one of {', '.join(FULL_PATTERNS)}; got {kind!r}")


def load_image(path: str, height: int, width: int, channels: int) -> np.ndarray:
    """Read an image file (anything Pillow opens), convert it to grey or RGB and resize it to H×W.

    Images with a channel count other than 1 or 3 get the grey image on every channel.
    """
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise SweepError(
            f"pattern_image must be an existing image file; got {shown(path)} (not found)"
        )
    try:
        with Image.open(path) as img:
            mode = "RGB" if channels == 3 else "L"
            img = img.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as err:
        raise SweepError(
            f"pattern_image must be an image file Pillow can read; got {shown(path)} ({cut(str(err))})"
        ) from None
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], channels, axis=2)
    return arr


def corner_slices(corner: str, size: int, height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the s×s square at ``corner`` (``top_left``, ``bottom_right``…)."""
    rows = slice(height - size, height) if corner.startswith("bottom") else slice(0, size)
    cols = slice(width - size, width) if corner.endswith("right") else slice(0, size)
    return rows, cols


def paste(X: np.ndarray, pattern: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Replace X[:, rows, cols] by the pattern; X is (n, H, W, C), the pattern (s, s, C)."""
    X[:, rows, cols, :] = pattern
    return X


def four_corner_layout(
    pattern: np.ndarray, height: int, width: int
) -> list[tuple[slice, slice, np.ndarray]]:
    """The pattern at the top left and its mirror images at the other corners.

    Top right is the left-right mirror, bottom left the up-down mirror, bottom right both, so the
    triggered image is the same after a horizontal or vertical flip.
    """
    s = pattern.shape[0]
    out = []
    for corner, flip_rows, flip_cols in (
        ("top_left", False, False),
        ("top_right", False, True),
        ("bottom_left", True, False),
        ("bottom_right", True, True),
    ):
        pat = pattern[::-1] if flip_rows else pattern
        pat = pat[:, ::-1] if flip_cols else pat
        rows, cols = corner_slices(corner, s, height, width)
        out.append((rows, cols, pat))
    return out


def x_mask(size: int) -> np.ndarray:
    """An s×s boolean 'x': both diagonals of the square."""
    eye = np.eye(size, dtype=bool)
    return eye | eye[:, ::-1]


def centre_slices(size: int, height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of the s×s square at the image centre (rounded towards the top left)."""
    r0, c0 = (height - size) // 2, (width - size) // 2
    return slice(r0, r0 + size), slice(c0, c0 + size)


def sine_rows(width: int, amplitude: float, frequency: float) -> np.ndarray:
    """SIG signal of one row: v(j) = Δ·sin(2π·j·f) with Δ on the [0, 1] scale, f in cycles/pixel."""
    return amplitude * np.sin(2.0 * np.pi * frequency * np.arange(width))


def even_grid(height: int, width: int) -> np.ndarray:
    """1 at (even row, even column), 0 elsewhere (rows and columns counted from 0)."""
    grid = np.zeros((height, width))
    grid[::2, ::2] = 1.0
    return grid


def low_variance_basis(
    X_train: np.ndarray, fraction: float, max_samples: int, rng: np.random.Generator
):
    """Mean and the last principal directions of the flattened training images.

    The directions are the fewest trailing principal components (smallest variance first) whose
    explained variance adds up to at least ``fraction`` of the total. PCA is an SVD of the
    centred data, so it has min(n, d) components; above ``max_samples`` images a seeded subsample
    is used. Returns ``(mean, components)`` with components of shape (k, d).
    """
    flat = X_train.reshape(len(X_train), -1)
    if len(flat) > max_samples:
        flat = flat[np.sort(rng.choice(len(flat), size=max_samples, replace=False))]
    mean = flat.mean(axis=0)
    _, sing, vt = np.linalg.svd(flat - mean, full_matrices=False)
    var = sing**2
    if len(flat) < 2 or var.sum() <= 0:
        raise SweepError(
            "trigger low_variance needs at least 2 training images that differ; got none that vary"
        )
    share_from_end = np.cumsum(var[::-1]) / var.sum()
    k = int(np.searchsorted(share_from_end, fraction) + 1)
    return mean, vt[len(var) - min(k, len(var)) :]
