"""The HTML report: content on hand-made stores, and a real smoke sweep's report in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis.load import load
from analysis.report import build_report
from analysis.select import format_choice, select_robust
from backdoor_sweep.errors import SweepError
from sweep.store import Store
from tests.conftest import cli
from tests.handmade import write_sweep

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def page_without_library(html: str) -> str:
    lib = plotly_js()
    assert html.count(lib) == 1, "plotly.js must be embedded exactly once"
    return html.replace(lib, "")


def figures(html: str) -> list[str]:
    return re.findall(r'data-figure="(fig\d+)"', html)


def test_one_sweep_report_is_self_contained_and_complete(tmp_path):
    store = write_sweep(tmp_path / "s", "hand", n_errors=2)
    out = build_report(store, out=tmp_path / "r" / "report.html")
    html = out.read_text()
    rest = page_without_library(html)
    assert "<script src" not in rest and "http://" not in rest and "https://" not in rest
    # what was swept: spec, grid size, wall time, versions
    assert "3 × 2 × 2 × 2 = 24 configurations × 3 seeds = 72 results" in rest
    assert "55.0 s" in rest and "sklearn 1.9.1" in rest and "hand-made sweep for tests" in rest
    # the recommendation agrees with select_robust on the same rows, with its reason
    for objective in ("asr", "worst_asr"):
        sel = select_robust(load(store, "hand"), objective=objective)
        assert f'data-objective="{objective}"' in rest
        assert format_choice(sel.choice) in rest
        assert sel.reason.replace("'", "&#x27;") in rest
    assert 'data-objective="slope"' not in rest  # this sweep recorded no slope
    # heatmaps of clean_acc and asr (one panel per attack setting), worst-case ASR, Pareto front
    assert "<h3>clean_acc</h3>" in rest and "<h3>asr</h3>" in rest and "<h3>slope</h3>" not in rest
    assert "poison_rate = 0.1, trigger_size = 3" in rest
    # 2 heatmaps + worst case + importance + parallel coordinates + Pareto
    assert len(figures(rest)) == 4 + 2
    assert "2 failed results" in rest and "ValueError: boom" in rest
    assert "comparison of sweeps" not in rest


def test_several_sweeps_get_a_comparison_curves_and_slope(tmp_path):
    write_sweep(tmp_path, "plain", seed=1)
    store = write_sweep(tmp_path, "curvy", with_slope=True, with_curves=True)
    html = build_report(store, ["plain", "curvy"], tmp_path / "both.html").read_text()
    rest = page_without_library(html)
    assert "comparison of sweeps" in rest and 'href="#plain"' in rest and 'href="#curvy"' in rest
    table = rest[rest.index("comparison of sweeps") : rest.index('id="plain"')]
    for name in ("plain", "curvy"):
        sel = select_robust(load(store, name))
        assert format_choice(sel.choice) in table and f"{sel.metrics['asr']['mean']:.3f}" in table
    curvy = rest[rest.index('id="curvy"') :]
    assert (
        "backdoor learning curves" in curvy
        and "<h3>slope</h3>" in curvy
        and 'data-objective="slope"' in curvy
    )
    assert "clean accuracy vs slope" in curvy
    # plain: 3 heatmap figures + Pareto; curvy: 4 heatmap figures + curves + 2 Pareto;
    # each also importance and parallel coordinates
    assert len(figures(rest)) == (4 + 2) + (7 + 2)


def test_report_refuses_what_it_cannot_show(tmp_path):
    with pytest.raises(SweepError, match="--store must be an existing folder"):
        build_report(tmp_path / "missing", out=tmp_path / "r.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SweepError, match="has none"):
        build_report(Store(tmp_path / "empty"), out=tmp_path / "r.html")
    write_sweep(tmp_path / "one", "hand")
    with pytest.raises(SweepError, match="got 'nope'"):
        build_report(tmp_path / "one", ["nope"], out=tmp_path / "r.html")


def test_a_sweep_whose_results_all_failed_is_reported_not_fatal(tmp_path):
    write_sweep(tmp_path, "good")
    store = write_sweep(tmp_path, "bad", n_errors=72)
    rest = page_without_library(build_report(store, out=tmp_path / "r.html").read_text())
    bad = rest[rest.index('id="bad"') : rest.index('id="good"')]
    assert "no successful results to select from" in bad and "72 failed results" in bad
    assert figures(bad) == [] and len(figures(rest)) == 4 + 2
    assert "no verdict: no successful results to select from" in bad


# -- the browser test --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"Chromium is absent ({CHROMIUM} not found): install Debian's chromium package to run the browser test"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is not installed"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def open_in_browser(browser, html_path: Path, screenshot: Path) -> dict:
    """Load the page offline; return console errors, outside requests and each figure's SVG count.

    The full-page screenshot goes to ``screenshot`` (a test's temporary folder, never the repository).
    """
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    errors, outside = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith(("file://", "data:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(html_path.resolve().as_uri(), wait_until="load")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.figure')].every(f => f.querySelector('.js-plotly-plot .main-svg'))",
        timeout=60_000,
    )
    result = page.evaluate("""() => ({
        figures: [...document.querySelectorAll('.figure')].map(f => {
            const r = f.getBoundingClientRect();
            return {svgs: f.querySelectorAll('.js-plotly-plot .main-svg').length,
                    traces: f.querySelectorAll('.js-plotly-plot .trace, .js-plotly-plot .hm, .js-plotly-plot .parcoords').length,
                    width: r.width, height: r.height};
        }),
        scrollWidth: document.documentElement.scrollWidth,
        title: document.title,
    })""")
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return {**result, "errors": errors, "outside": outside}


def check_page(result: dict, n_figures: int) -> None:
    assert result["errors"] == []
    assert result["outside"] == []  # nothing but the file itself: it opens offline
    assert len(result["figures"]) == n_figures
    for fig in result["figures"]:
        assert (
            fig["svgs"] >= 1 and fig["traces"] >= 1 and fig["width"] > 300 and fig["height"] > 200
        )
    assert result["scrollWidth"] <= 1366  # no horizontal scrolling on a laptop screen


@pytest.mark.slow
def test_smoke_sweep_report_renders_in_chromium(browser, tmp_path, cli_env):
    store = tmp_path / "store"
    run = cli("run", "--smoke", "--store", str(store), "--quiet", env=cli_env)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "report.html"
    res = cli("report", "--store", str(store), "--out", str(out), env=cli_env)
    assert res.returncode == 0, res.stderr
    assert "wrote" in res.stdout and out.exists()
    html = out.read_text()
    page_without_library(html)
    result = open_in_browser(browser, out, tmp_path / "report-smoke.png")
    check_page(result, len(figures(html)))
    assert len(figures(html)) >= 4 and "digits_svm_rbf-smoke" in result["title"]


@pytest.mark.slow
def test_comparison_report_with_curves_renders_in_chromium(browser, tmp_path):
    write_sweep(tmp_path, "plain", seed=1)
    store = write_sweep(tmp_path, "curvy", with_slope=True, with_curves=True)
    out = build_report(store, ["plain", "curvy"], tmp_path / "both.html")
    result = open_in_browser(browser, out, tmp_path / "report-comparison.png")
    check_page(result, 15)


# -- the story: the verdict first, accurate models only, DP -------------------------------------
def test_the_section_opens_with_the_verdict(tmp_path):
    from analysis.verdict import verdict_info

    store = write_sweep(tmp_path, "hand", with_slope=True)
    rest = page_without_library(build_report(store, out=tmp_path / "r.html").read_text())
    v = verdict_info(load(store, "hand"))
    assert "how to read this report" in rest[: rest.index('id="hand"')]
    section = rest[rest.index('id="hand"') :]
    assert section.index('data-verdict="1"') < section.index("what was swept")
    verdict = section[section.index('data-verdict="1"') : section.index("what was swept")]
    assert f"use {format_choice(v.recommended.choice)}" in verdict
    clean, asr = v.recommended.values["clean_acc"], v.recommended.values["asr"]
    assert f"{clean['ci_low']:.3f} – {clean['ci_high']:.3f}" in verdict
    assert f"{asr['ci_low']:.3f} – {asr['ci_high']:.3f}" in verdict
    assert "ASR, worst case over the attacks swept (at poison_rate=0.1, trigger_size=3)" in verdict
    # hand-made: every accurate configuration is backdoored at the one poisoned rate
    assert "No accurate configuration keeps ASR below 0.5 at poison_rate 0.1" in verdict
    assert "The 3 criteria agree" in verdict and "use it when" in verdict
    # heatmaps grey what is outside the tolerance and outline the recommendation
    assert "grey: clean accuracy more than 0.01 below the best" in section
    assert "outlined: the recommended configuration" in section
    assert "what moves ASR and clean accuracy" in section
    # the most vulnerable explained is an accurate one (C=0.1 is inaccurate: clean 0.6)
    assert "most vulnerable accurate configuration: C=10, gamma=0.1" in section


@pytest.mark.slow  # the explanations rebuild a CNN
def test_dp_sweeps_show_epsilon_and_the_privacy_view(tmp_path):
    import itertools

    import numpy as np
    import pandas as pd

    from tests.handmade import write_store

    rows = []
    for noise, rate, seed in itertools.product((0.0, 0.5, 1.0), (0.05, 0.2), (0, 1)):
        rows.append(
            {
                "learner": "cnn",
                "trigger": "patch",
                "poisoning": "dirty_label",
                "target": 1,
                "defence": "dp_sgd",
                "dp_delta": 1e-5,
                "dp_noise": noise,
                "poison_rate": rate,
                "seed": seed,
                "n_poison": int(rate * 100),
                "clean_acc": 0.99 - 0.005 * noise + 0.001 * seed,
                "asr": 0.9 - 0.3 * noise + rate,
                "dp_epsilon": np.nan if noise == 0 else 4.0 / noise + 0.1 * seed,
            }
        )
    raw = {
        "dataset": {"name": "digits", "classes": [7, 1]},
        "learner": {"name": "cnn"},
        "attack": {"trigger": "patch", "poisoning": "dirty_label", "target": 1},
        "defence": {"name": "dp_sgd", "dp_delta": 1e-5},
        "grid": {"dp_noise": [0.0, 0.5, 1.0], "poison_rate": [0.05, 0.2]},
        "seeds": [0, 1],
    }
    store = write_store(tmp_path, "dp", raw, pd.DataFrame(rows))
    rest = page_without_library(build_report(store, out=tmp_path / "r.html").read_text())
    verdict = rest[rest.index('data-verdict="1"') : rest.index("what was swept")]
    assert "use dp_noise=1" in verdict and "ε = 4.05 at δ = 1e-05" in verdict
    assert "privacy, robustness and accuracy" in rest and "ε (δ = 1e-05)" in rest
    assert '<td>dp_noise=0</td><td class="num">∞</td>' in rest
