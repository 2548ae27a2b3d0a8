"""The trigger gallery: the data it computes, the PNG and HTML it draws, and the CLI command."""

from __future__ import annotations

import base64
import io
import re
import typing

import numpy as np
import pytest
from PIL import Image

from analysis.gallery import gallery_info, render_html, render_png, settings, write_gallery
from backdoor_sweep.errors import SweepError
from sweep.spec import PRESETS_DIR, load_spec
from tests.conftest import cli
from tests.dataset_files import write_cifar10
from trainables.attacks.clean_label import CleanLabelParams
from trainables.attacks.triggers import TRIGGERS
from trainables.data.datasets import Dataset, DatasetSpec, load_dataset

HARDENINGS = [
    h for h in typing.get_args(CleanLabelParams.model_fields["hardening"].annotation) if h != "none"
]


@pytest.fixture(scope="module")
def digits_gallery(digits_data):
    return gallery_info(digits_data, n_samples=3, seed=0)


def test_default_settings_cover_every_trigger_and_hardening():
    rows = settings()
    assert [s.name for s in rows if s.kind == "trigger"] == list(TRIGGERS)
    assert [s.name for s in rows if s.kind == "hardening"] == HARDENINGS
    patch = next(s for s in rows if s.name == "patch")
    assert patch.params == TRIGGERS["patch"].Params().model_dump()  # defaults are shown


def test_gallery_rows_show_each_trigger_where_it_acts(digits_data, digits_gallery):
    info = digits_gallery
    n_rows = 1 + len(TRIGGERS) + len(HARDENINGS)
    assert info.images.shape == (n_rows, 3, 8, 8) and info.skipped == []
    assert info.images.min() >= 0.0 and info.images.max() <= 1.0
    clean = info.images[0]
    # one sample per class in turn, from the test set
    assert info.sample_labels == ["class 7", "class 1", "class 7"]
    assert all(any(np.array_equal(c, x) for x in digits_data.X_test) for c in clean)
    for i, label in enumerate(info.row_labels[1:], start=1):
        name = label.split(" (")[0]
        if name not in TRIGGERS:
            continue
        assert not np.array_equal(info.images[i], clean), name
        if name == "random_square":  # a different place per image: changes fit in one s×s square
            for k in range(len(clean)):
                rows, cols = np.nonzero(info.images[i][k] != clean[k])
                assert np.ptp(rows) < 3 and np.ptp(cols) < 3
            continue
        trigger = TRIGGERS[name].from_config({}).fit(digits_data.X_train, np.random.default_rng(0))
        outside = ~trigger.mask()
        np.testing.assert_array_equal(info.images[i][:, outside], clean[:, outside], err_msg=name)
    patch = info.images[info.row_labels.index(settings()[0].label)]
    assert not np.array_equal(patch[:, -3:, -3:], clean[:, -3:, -3:])


def test_hardening_rows(digits_gallery):
    info = digits_gallery
    clean = info.images[0]
    by_name = {label.split(" (")[0]: info.images[i] for i, label in enumerate(info.row_labels)}
    eps = CleanLabelParams().epsilon / 255.0
    linf = by_name["clean-label pgd_linf"] - clean
    assert np.abs(linf).max() <= eps + 1e-12 and np.abs(linf).max() > 0
    l2 = (by_name["clean-label pgd_l2"] - clean).reshape(len(clean), -1)
    assert (np.linalg.norm(l2, axis=1) <= eps + 1e-9).all()
    assert not np.array_equal(by_name["clean-label noise"], clean)
    assert not np.array_equal(by_name["clean-label interpolation"], clean)


def test_spec_rows_follow_its_grid():
    spec = load_spec(PRESETS_DIR / "digits_svm_rbf.yaml")
    patch_rows = [s for s in settings(spec) if s.name == "patch"]
    assert [s.params["trigger_size"] for s in patch_rows] == spec.grid["trigger_size"]
    spec = load_spec(PRESETS_DIR / "digits_clean_label_pgd.yaml")
    pgd = [s for s in settings(spec) if s.name == "pgd_linf"]
    assert [s.params["epsilon"] for s in pgd] == spec.grid["epsilon"]
    assert {s.params["surrogate"] for s in pgd} == {"logistic"}


def test_triggers_that_do_not_fit_are_skipped_with_the_reason():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(20, 2, 2))
    y = np.tile([0, 1], 10)
    info = gallery_info(Dataset("tiny", X, y, X[:6], y[:6], ["a", "b"]), n_samples=2)
    assert any(s.startswith("patch") and "trigger_size must be at most" in s for s in info.skipped)
    assert "patch" not in " ".join(info.row_labels)
    assert len(info.row_labels) == len(info.images)


@pytest.mark.slow
def test_colour_gallery_png_and_html_round_trip(tmp_path):
    write_cifar10(tmp_path / "data", n_per_class_per_batch=2, n_test_per_class=2)
    data = load_dataset(
        DatasetSpec(name="cifar10", data_root=str(tmp_path / "data"), classes=["airplane", "frog"])
    )
    info = gallery_info(data, n_samples=2, seed=1)
    assert info.images.shape[1:] == (2, 32, 32, 3)

    png = render_png(info, tmp_path / "g.png")
    with Image.open(png) as pic:
        assert pic.format == "PNG" and pic.mode == "RGB"
        assert pic.width > 2 * 96 and pic.height > len(info.row_labels) * 96
        assert len(pic.getcolors(maxcolors=1 << 20)) > 100  # images were drawn, not a blank page

    page = render_html(info, tmp_path / "g.html").read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == info.images.shape[0] * info.images.shape[1]
    assert "http" not in page  # self-contained
    first = np.asarray(Image.open(io.BytesIO(base64.b64decode(uris[0]))))
    np.testing.assert_array_equal(first, np.round(info.images[0, 0] * 255).astype(np.uint8))


def test_output_kind_from_suffix(tmp_path, digits_gallery):
    assert (
        write_gallery(digits_gallery, tmp_path / "a.HTML").read_text().startswith("<!DOCTYPE html>")
    )
    with pytest.raises(SweepError, match=r"--out must end in .png or .html; got"):
        write_gallery(digits_gallery, tmp_path / "a.gif")


@pytest.mark.slow
def test_cli_triggers(tmp_path, cli_env):
    out = tmp_path / "zoo.html"
    res = cli(
        "triggers",
        "--spec",
        str(PRESETS_DIR / "digits_trigger_zoo.yaml"),
        "--out",
        str(out),
        "--images",
        "2",
        env=cli_env,
    )
    assert res.returncode == 0, res.stderr
    assert out.read_text().count("<img") >= 2 * (1 + len(TRIGGERS))
    # long work shows progress: one line per trigger and hardening, on stderr
    steps = [line for line in res.stderr.splitlines() if line.startswith("triggers: ")]
    assert len(steps) >= len(TRIGGERS) and steps[0].startswith("triggers: 1/"), res.stderr
