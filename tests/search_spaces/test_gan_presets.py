"""The GAN-interpolation preset and its PGD baseline on the real MNIST sample (--smoke grids, with a
generator of a few steps and one CNN epoch so the test stays short): both run, one generator is
trained for the whole τ × rate grid, and the two presets share their unhardened baseline exactly."""

from __future__ import annotations

import pytest

from sweep.launcher import run_sweep
from sweep.spec import PRESETS_DIR, load_spec, parse_spec
from sweep.store import Store
from trainables.attacks import generator_cache as gc


def _smoke(name: str, store, **attack):
    data = load_spec(PRESETS_DIR / f"{name}.yaml").smoke().model_dump()
    data["store"] = str(store)
    data["learner"]["epochs"] = 1
    data["attack"].update(attack)
    # ε = 0 / τ = 0 (the unhardened attack) and one hardened value, at one poison rate
    data["grid"]["poison_rate"] = data["grid"]["poison_rate"][:1]
    return parse_spec(data)


@pytest.mark.slow
def test_gan_preset_and_its_pgd_baseline(tmp_path, ray_runtime):
    store = tmp_path / "store"
    gan = _smoke(
        "mnist_sample_clean_label_gan", store, gan_steps=5, gan_encode_steps=5, gan_latent_dim=8
    )
    run_sweep(gan, show_progress=False)
    pgd = _smoke("mnist_sample_clean_label_pgd", store, pgd_steps=2)
    run_sweep(pgd, show_progress=False)
    df = Store(store).read_table("trials")
    assert (df["status"] == "ok").all() and len(df) == gan.n_results + pgd.n_results == 6
    assert [e["event"] for e in gc.read_events(store / ".cache")] == ["trained", "encoded"]
    g = df[df["hardening"] == "gan_interpolation"]
    assert len(g) == 2 and g["generator_key"].nunique() == 1
    assert (g["n_poison"] == int(0.5 * 350)).all()

    # pixel interpolation at τ = 0 and PGD at ε = 0 are both the unhardened attack: same poisons,
    # same seed, same network — the same numbers, so the presets compare at matched poison rates
    pixel0 = df[(df["hardening"] == "interpolation") & (df["tau"] == 0.0)]
    pgd0 = df[(df["hardening"] == "pgd_linf") & (df["epsilon"] == 0.0)]
    assert len(pixel0) == len(pgd0) == 1
    for metric in ("clean_acc", "asr", "n_poison"):
        assert pixel0[metric].iloc[0] == pgd0[metric].iloc[0], metric
