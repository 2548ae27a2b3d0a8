"""Triggers (docs/science.md §3): where each changes pixels, by how much, on grey and colour images."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from backdoor_sweep.errors import SweepError
from tests.conftest import cli
from trainables.attacks.patterns import low_variance_basis
from trainables.attacks.triggers import LOW_VARIANCE_FRACTION, TRIGGERS, make_trigger

SHAPES = [(8, 8), (12, 10), (8, 8, 3), (9, 11, 3)]  # grey and colour, square and not


def board(n):
    """n×n 0/1 checkerboard, white (1) at the top-left corner."""
    return np.array([[1.0 if (r + c) % 2 == 0 else 0.0 for c in range(n)] for r in range(n)])


def diagonals(n):
    return np.array([[r == c or r + c == n - 1 for c in range(n)] for r in range(n)])


def images(shape, n=6, seed=0, low=0.05, high=0.95):
    """Seeded images strictly inside (0, 1), so a replaced or shifted pixel always shows."""
    return np.random.default_rng(seed).uniform(low, high, size=(n, *shape))


def fitted(name, shape, seed=0, **params):
    X = images(shape, n=40, seed=seed + 100)
    return make_trigger({"trigger": name, **params}).fit(X, np.random.default_rng(seed))


def changed(X, out):
    """(n, H, W) map of pixels changed on any channel."""
    d = out != X
    return d.reshape(*d.shape[:3], -1).any(axis=3)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_every_trigger_keeps_shape_range_and_is_seeded(name, shape):
    trig = fitted(name, shape)
    X = images(shape, seed=1, low=0.0, high=1.0)
    X[0] = 0.0
    X[1] = 1.0
    X0 = X.copy()
    out = trig.apply(X, np.random.default_rng(5))
    np.testing.assert_array_equal(X, X0)  # the input is not modified in place
    assert out.shape == X.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert changed(X, out).any()
    np.testing.assert_array_equal(out, fitted(name, shape).apply(X, np.random.default_rng(5)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("corner", ["bottom_right", "bottom_left", "top_right", "top_left"])
def test_patch_replaces_exactly_the_corner_square(shape, corner):
    s = 3
    trig = fitted("patch", shape, trigger_size=s, corner=corner, pattern="random")
    X = images(shape)
    out = trig.apply(X)
    h, w = shape[:2]
    rows = slice(h - s, h) if corner.startswith("bottom") else slice(0, s)
    cols = slice(w - s, w) if corner.endswith("right") else slice(0, s)
    expect = np.zeros((h, w), dtype=bool)
    expect[rows, cols] = True
    assert (changed(X, out) == expect).all()
    block = out[:, rows, cols].reshape(len(X), s, s, -1)
    np.testing.assert_array_equal(block, np.broadcast_to(trig.pattern_, block.shape))


@pytest.mark.parametrize("pattern", ["checkerboard", "solid"])
def test_patch_patterns(pattern):
    trig = fitted("patch", (8, 8), trigger_size=4, pattern=pattern, corner="top_left")
    out = trig.apply(np.full((1, 8, 8), 0.5))
    expect = board(4) if pattern == "checkerboard" else np.ones((4, 4))
    np.testing.assert_array_equal(out[0, :4, :4], expect)


@pytest.mark.parametrize("shape", [(10, 10), (10, 12, 3)])
def test_random_square_moves_the_pattern_per_sample(shape):
    s = 3
    trig = fitted("random_square", shape, trigger_size=s)
    X = images(shape, n=40)
    out = trig.apply(X, np.random.default_rng(3))
    where = changed(X, out)
    tops = set()
    for i in range(len(X)):
        r, c = np.nonzero(where[i])
        top, left = r.min(), c.min()
        assert where[i].sum() == s * s and r.max() - top == s - 1 and c.max() - left == s - 1
        patch = out[i, top : top + s, left : left + s].reshape(s, s, -1)
        np.testing.assert_array_equal(patch, trig.pattern_)
        tops.add((top, left))
    assert len(tops) > 5
    # without a generator the locations come from the fit seed: reproducible
    np.testing.assert_array_equal(trig.apply(X), trig.apply(X))


@pytest.mark.parametrize("shape", SHAPES)
def test_four_corner_is_flip_symmetric_and_leaves_the_middle(shape):
    s = 2
    trig = fitted("four_corner", shape, trigger_size=s)
    X = images(shape)
    out = trig.apply(X)
    h, w = shape[:2]
    expect = np.zeros((h, w), dtype=bool)
    for rows in (slice(0, s), slice(h - s, h)):
        for cols in (slice(0, s), slice(w - s, w)):
            expect[rows, cols] = True
    assert (changed(X, out) == expect).all()
    # the trigger commutes with horizontal and vertical flips (it survives them)
    for axis in (1, 2):
        np.testing.assert_array_equal(trig.apply(np.flip(X, axis)), np.flip(out, axis))
    np.testing.assert_array_equal(out[:, :s, :s].reshape(len(X), s, s, -1)[0], trig.pattern_)


@pytest.mark.parametrize("shape", SHAPES)
def test_x_draws_white_diagonals_at_the_centre(shape):
    s = 5
    trig = fitted("x", shape, trigger_size=s)
    X = images(shape)
    out = trig.apply(X)
    h, w = shape[:2]
    r0, c0 = (h - s) // 2, (w - s) // 2
    expect = np.zeros((h, w), dtype=bool)
    expect[r0 : r0 + s, c0 : c0 + s] = diagonals(s)
    assert (changed(X, out) == expect).all()
    assert (out[:, expect] == 1.0).all()
    assert diagonals(5).sum() == 9


@pytest.mark.parametrize("shape", SHAPES)
def test_reduced_amplitude_adds_plus_minus_a(shape):
    a = 40.0
    trig = fitted("reduced_amplitude", shape, amplitude=a, corner="bottom_right")
    X = np.full((2, *shape), 0.5)
    out = trig.apply(X)
    h, w = shape[:2]
    diff = (out - X).reshape(2, h, w, -1)
    signs = 2 * board(3) - 1
    np.testing.assert_allclose(
        diff[:, h - 3 :, w - 3 :, :],
        np.broadcast_to(a / 255 * signs[:, :, None], (2, 3, 3, diff.shape[3])),
    )
    diff[:, h - 3 :, w - 3 :, :] = 0
    assert (diff == 0).all()


def test_reduced_amplitude_255_is_the_full_pattern():
    trig = fitted("reduced_amplitude", (6, 6, 3), amplitude=255)
    out = trig.apply(images((6, 6, 3)))
    np.testing.assert_array_equal(out[:, 3:, 3:, 0], np.broadcast_to(board(3), (6, 3, 3)))
    assert (out[:, 3:, 3:, :] == out[:, 3:, 3:, :1]).all()


@pytest.mark.parametrize("shape", SHAPES)
def test_grid_adds_visibility_at_even_pixels_only(shape):
    c = 30.0
    trig = fitted("grid", shape, visibility=c)
    X = images(shape, high=0.8)
    out = trig.apply(X)
    rows, cols = np.indices(shape[:2])
    grid = (rows % 2 == 0) & (cols % 2 == 0)  # (even row, even column), counted from 0
    assert (changed(X, out) == grid).all()
    np.testing.assert_allclose(out[:, grid], X[:, grid] + c / 255)
    # added then clipped: a white pixel stays white
    np.testing.assert_array_equal(trig.apply(np.ones((1, *shape))), np.ones((1, *shape)))


@pytest.mark.parametrize("name", ["blend", "sine", "low_variance"])
@pytest.mark.parametrize("shape", SHAPES)
def test_alpha_zero_is_the_identity(name, shape):
    X = images(shape, low=0.0, high=1.0)
    np.testing.assert_array_equal(fitted(name, shape, alpha=0.0).apply(X), X)
    assert (fitted(name, shape, alpha=0.3).apply(X) != X).any()


@pytest.mark.parametrize("shape", SHAPES)
def test_blend_mixes_the_pattern_with_alpha(shape):
    X = images(shape)
    trig = fitted("blend", shape, alpha=0.25)
    np.testing.assert_allclose(trig.apply(X), 0.75 * X + 0.25 * trig.pattern_.reshape(shape))
    full = fitted("blend", shape, alpha=1.0)
    np.testing.assert_allclose(
        full.apply(X), np.broadcast_to(full.pattern_.reshape(shape), X.shape)
    )
    # the noise pattern is seeded by the fit generator
    assert not np.array_equal(fitted("blend", shape, seed=1).pattern_, trig.pattern_)


@pytest.mark.parametrize("shape", [(8, 8), (8, 6, 3)])
def test_blend_with_an_image_file(tmp_path, monkeypatch, shape):
    from PIL import Image

    rng = np.random.default_rng(0)
    src = (rng.uniform(0, 255, size=(16, 12, 3))).astype(np.uint8)
    Image.fromarray(src).save(tmp_path / "pattern.png")
    monkeypatch.chdir(tmp_path)
    trig = fitted("blend", shape, alpha=1.0, pattern="image", pattern_image="pattern.png")
    # the relative path is made absolute at validation, as Ray workers run elsewhere
    assert trig.params.pattern_image == str(tmp_path.resolve() / "pattern.png")
    out = trig.apply(images(shape))
    mode = "RGB" if len(shape) == 3 else "L"
    expect = (
        np.asarray(
            Image.fromarray(src).convert(mode).resize(shape[1::-1], Image.Resampling.BILINEAR)
        )
        / 255
    )
    np.testing.assert_allclose(out[0], expect)


def test_sine_defaults_reproduce_the_science_formula():
    X = np.full((2, 5, 32, 3), 0.5)
    out = fitted("sine", (5, 32, 3)).apply(X)
    j = np.arange(32)
    v = 0.4 * np.sin(0.05 * np.pi * j)
    np.testing.assert_allclose(
        out - X, np.broadcast_to(0.1 * v[None, None, :, None], X.shape), atol=1e-12
    )
    # α = 1 is the additive SIG of Barni et al.: Δ·sin(2π·j·f/W) with Δ = 20/255, f = 6 cycles over W
    W = 24
    trig = fitted("sine", (4, W), alpha=1.0, amplitude=20, frequency=6 / W)
    out = trig.apply(np.full((1, 4, W), 0.5))
    np.testing.assert_allclose(
        out[0] - 0.5,
        np.broadcast_to(20 / 255 * np.sin(2 * np.pi * j[:W] * 6 / W), (4, W)),
        atol=1e-12,
    )


@pytest.mark.parametrize("shape", [(8, 8), (6, 6, 3)])
def test_low_variance_pattern_lives_in_the_trailing_components(shape):
    X = images(shape, n=60, seed=4)
    X[:, 0, :] *= 0.01  # a low-variance row the trigger should favour
    trig = make_trigger({"trigger": "low_variance", "alpha": 0.2}).fit(X, np.random.default_rng(0))
    flat = X.reshape(len(X), -1)
    _, sing, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
    share = sing**2 / (sing**2).sum()
    k = trig.n_components_
    # the fewest trailing components that reach 0.5% of the variance
    assert (
        share[len(share) - k :].sum() >= LOW_VARIANCE_FRACTION > share[len(share) - k + 1 :].sum()
    )
    v = trig.pattern_.reshape(-1)
    assert np.abs(v).max() == pytest.approx(1.0)
    np.testing.assert_allclose(vt[:-k] @ v, 0.0, atol=1e-9)  # no component along the others
    mid = np.full((1, *shape), 0.5)
    np.testing.assert_allclose(
        trig.apply(mid) - mid, 0.2 * trig.pattern_.reshape(1, *shape), atol=1e-12
    )
    mean, basis = low_variance_basis(X, LOW_VARIANCE_FRACTION, 10**6, np.random.default_rng(0))
    assert len(basis) == k


@pytest.mark.parametrize(
    ("params", "shape", "field"),
    [
        ({"trigger": "patch", "trigger_size": 9}, (8, 8), "trigger_size"),
        ({"trigger": "random_square", "trigger_size": 11}, (10, 12, 3), "trigger_size"),
        ({"trigger": "four_corner", "trigger_size": 5}, (8, 8), "trigger_size"),
        ({"trigger": "x", "trigger_size": 9}, (8, 8), "trigger_size"),
        ({"trigger": "reduced_amplitude", "trigger_size": 9}, (8, 8), "trigger_size"),
        ({"trigger": "blend", "pattern": "image"}, (8, 8), "pattern_image"),
        ({"trigger": "blend", "pattern_image": "x.png"}, (8, 8), "pattern_image"),
        (
            {"trigger": "low_variance", "pattern": "image", "pattern_image": "/nonexistent.png"},
            (8, 8),
            "pattern_image",
        ),
    ],
)
def test_check_refuses_a_trigger_that_does_not_fit(params, shape, field):
    trig = make_trigger(params)
    with pytest.raises(SweepError) as err:
        trig.check(shape)
    msg = str(err.value)
    assert msg.startswith(field) and "\n" not in msg and "got" in msg


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"trigger": "blend", "alpha": 1.5}, "alpha"),
        ({"trigger": "sine", "frequency": 0.5}, "frequency"),
        ({"trigger": "grid", "visibility": 300}, "visibility"),
        ({"trigger": "reduced_amplitude", "amplitude": -1}, "amplitude"),
        ({"trigger": "x", "trigger_size": 2}, "trigger_size"),
        ({"trigger": "patch", "pattern": "image"}, "pattern"),
    ],
)
def test_parameters_are_validated_in_one_line(params, field):
    with pytest.raises(SweepError) as err:
        make_trigger(params)
    msg = str(err.value)
    assert msg.startswith(field) and "\n" not in msg


def test_four_corner_fits_when_the_corners_just_touch():
    trig = fitted("four_corner", (8, 8), trigger_size=4)
    assert trig.mask().all()


def _spec(tmp_path, trigger: str, size: int) -> str:
    spec = {
        "name": "too-large",
        "dataset": {"name": "digits", "classes": [7, 1]},
        "learner": {"name": "svm_rbf"},
        "attack": {"trigger": trigger, "poisoning": "dirty_label", "target": 1},
        "grid": {"trigger_size": [2, size]},
        "store": str(tmp_path / "store"),
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize(("trigger", "size"), [("patch", 9), ("four_corner", 5)])
def test_cli_refuses_a_trigger_too_large_for_digits(tmp_path, cli_env, trigger, size):
    res = cli("run", _spec(tmp_path, trigger, size), "--quiet", env=cli_env)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert (
        lines[0].startswith("error: grid.trigger_size must be at most")
        and f"got {size}" in lines[0]
    )
    assert not (tmp_path / "store").exists()
