"""The trigger gallery's GAN rows: one per τ the spec sweeps, beside the clean image and PGD's."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.gallery import gallery_info, settings
from sweep.spec import parse_spec
from trainables.attacks import generator_cache as gc

TAUS = [0.0, 0.2, 0.5]
TINY = {"gan_latent_dim": 4, "gan_steps": 3, "gan_encode_steps": 5}


def _spec(store):
    return parse_spec(
        {
            "name": "gan-gallery",
            "dataset": {"name": "digits", "classes": [7, 1]},
            "learner": {"name": "logistic"},
            "attack": {
                "trigger": "patch",
                "poisoning": "clean_label",
                "target": 1,
                "epsilon": 32,
                **TINY,
            },
            "grid": {"hardening": ["gan_interpolation", "pgd_linf"], "tau": TAUS},
            "store": str(store),
        }
    )


@pytest.fixture(autouse=True)
def fresh_memo():
    gc._MEMO.clear()
    yield
    gc._MEMO.clear()


def test_one_gan_row_per_tau_with_short_labels(tmp_path):
    rows = [s for s in settings(_spec(tmp_path)) if s.name == "gan_interpolation"]
    assert [s.params["tau"] for s in rows] == TAUS
    assert rows[0].params["gan_steps"] == 3  # the spec's generator settings reach the rows
    # settings at their defaults stay out of the label; the spec's own ones are shown
    assert rows[1].label == (
        "clean-label gan_interpolation (tau=0.2, gan_latent_dim=4, gan_steps=3, gan_encode_steps=5)"
    )


@pytest.mark.slow
def test_gallery_shows_interpolations_beside_clean_and_pgd(digits_data, tmp_path):
    spec = _spec(tmp_path / "store")
    info = gallery_info(digits_data, spec, n_samples=2, seed=0)
    labels = [label.split(" (")[0] for label in info.row_labels]
    assert labels.count("clean-label gan_interpolation") == len(TAUS)
    assert "clean-label pgd_linf" in labels and info.row_labels[0] == "clean"
    gan = [
        info.images[i]
        for i, label in enumerate(info.row_labels)
        if label.startswith("clean-label gan_interpolation")
    ]
    clean = info.images[0]
    assert all(g.shape == clean.shape and g.min() >= 0 and g.max() <= 1 for g in gan)
    # the further along τ, the further from the τ = 0 reproduction
    d = [np.abs(g - gan[0]).mean() for g in gan]
    assert d[0] == 0 < d[1] < d[2]
    # the generator is the sweep's: trained on the whole training set, kept in the spec's store
    events = gc.read_events(tmp_path / "store" / ".cache")
    assert [e["event"] for e in events] == ["trained", "encoded"]
    assert events[0]["n_images"] == len(digits_data.X_train)
