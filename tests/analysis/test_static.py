"""Figures to files: HTML, and PNG/PDF/SVG through plotly's static export in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.static import browser_path, check_figure_path, write_figure
from backdoor_sweep.errors import SweepError

MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-", ".svg": b"<svg"}


def figure():
    import plotly.graph_objects as go

    return go.Figure(go.Heatmap(z=[[0.1, 0.9], [0.5, 0.3]], zmin=0, zmax=1))


@pytest.mark.parametrize("name", ["x.jpg", "x", "x.png.txt", "x.htm"])
def test_an_unknown_extension_is_one_line_and_writes_nothing(tmp_path, name):
    with pytest.raises(SweepError) as err:
        write_figure(figure(), tmp_path / name)
    assert str(err.value).startswith("--out must end in .html, .png, .pdf, .svg; got ")
    assert list(tmp_path.iterdir()) == []


def test_html_is_self_contained(tmp_path):
    out = write_figure(figure(), tmp_path / "sub" / "f.html")
    from plotly.offline import get_plotlyjs

    text = out.read_text()
    assert text.startswith("<!doctype html>") and get_plotlyjs() in text  # opens offline
    assert check_figure_path("A.SVG") == Path("A.SVG")  # the case of the extension does not matter


@pytest.mark.slow
def test_png_pdf_svg_are_those_formats(tmp_path):
    if browser_path() is None:
        pytest.skip("no Chromium: install Debian's chromium or set BROWSER_PATH")
    for suffix, magic in MAGIC.items():
        out = write_figure(figure(), tmp_path / f"f{suffix}")
        head = out.read_bytes()[:200]
        assert magic in head, (suffix, head[:40])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "f.pdf",
        "f.png",
        "f.svg",
    ]  # no temporaries
