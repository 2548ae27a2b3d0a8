"""The figure commands on a sweep without gamma: axes from the grid, --out formats, importance,
parallel coordinates, and `explain` picking attacked settings, strongest first, by default."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from tests.conftest import cli
from tests.handmade import write_store

RAW = {
    "dataset": {"name": "digits", "classes": [7, 1]},
    "learner": {"name": "svm_linear"},
    "attack": {"trigger": "patch", "poisoning": "dirty_label", "target": 1},
    "grid": {"C": [0.01, 1.0, 100.0], "poison_rate": [0.0, 0.05, 0.2], "trigger_size": [1, 3]},
    "seeds": [0, 1],
}


def linear_store(root):
    rows = []
    for C, rate, size, seed in itertools.product(*RAW["grid"].values(), RAW["seeds"]):
        rows.append(
            {
                "learner": "svm_linear",
                "trigger": "patch",
                "poisoning": "dirty_label",
                "target": 1,
                "C": C,
                "poison_rate": rate,
                "trigger_size": size,
                "seed": seed,
                "n_poison": int(rate * 200),
                "clean_acc": (0.55 if C == 0.01 else 0.99) + 0.002 * seed,
                "asr": min(1.0, rate * (2 + size) + 0.001 * C) if rate else 0.01,
            }
        )
    return write_store(root, "linear", RAW, pd.DataFrame(rows))


def one_line(res) -> str:
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.slow
def test_figure_commands_on_a_sweep_without_gamma(tmp_path, cli_env):
    store = str(linear_store(tmp_path / "store").root)
    png = tmp_path / "asr.png"
    h = cli("heatmap", "--store", store, "--out", str(png), env=cli_env)
    assert h.returncode == 0, h.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(2 panel(s), 3x3 cells; mean over seeds)" in h.stdout  # C x poison_rate by size

    bad = cli("heatmap", "--store", store, "--out", str(tmp_path / "x.jpg"), env=cli_env)
    assert one_line(bad) == (
        f"error: --out must end in .html, .png, .pdf, .svg; got {str(tmp_path / 'x.jpg')!r}"
    )
    typo = cli("heatmap", "--store", store, "--y", "gama", "--x", "C", env=cli_env)
    assert "got 'gama'" in one_line(typo) and "trigger_size" not in typo.stderr

    imp = cli("importance", "--store", store, env=cli_env)
    assert imp.returncode == 0, imp.stderr
    assert imp.stdout.startswith("asr: poison_rate ") and "clean_acc: C 100%" in imp.stdout

    par = tmp_path / "p.svg"
    pc = cli("parallel", "--store", store, "--out", str(par), env=cli_env)
    assert pc.returncode == 0, pc.stderr
    assert b"<svg" in par.read_bytes()[:200] and "18 grid cells" in pc.stdout

    out = tmp_path / "explain.html"
    ex = cli("explain", "--store", store, "--out", str(out), "--k", "3", env=cli_env)
    assert ex.returncode == 0, ex.stderr
    # the report's picks: recommended, then the most vulnerable accurate (never chance-level C=0.01)
    assert "explaining the recommended and the most vulnerable accurate configuration" in ex.stdout
    titles = [line for line in ex.stdout.splitlines() if "influential_poison_frac" in line]
    assert len(titles) == 2
    assert all("poison_rate=0.2, trigger_size=3" in t for t in titles)  # the strongest attack
    assert "C=0.01" not in ex.stdout
    # --where matching every attack: poisoned results first, the strongest first
    ex = cli("explain", "--store", store, "--where", "C = 1", "--out", str(out), env=cli_env)
    assert ex.returncode == 0, ex.stderr
    titles = [line for line in ex.stdout.splitlines() if "influential_poison_frac" in line]
    assert "poison_rate=0.2, trigger_size=3" in titles[0]
    assert "poison_rate=0.2, trigger_size=1" in titles[1]
    assert not any("poison_rate=0," in t for t in titles)
