"""Writing a figure to a file in the format its name asks for.

``.html`` is a self-contained page (plotly.js embedded: it opens offline). ``.png``, ``.pdf`` and
``.svg`` are plotly's static export: kaleido (1.x) draws the figure in a headless Chromium. The
browser is the one named by ``BROWSER_PATH``, else Debian's ``/usr/bin/chromium`` when it exists
(it is then put in ``BROWSER_PATH`` for kaleido), else whatever Chrome or Chromium kaleido finds
on the ``PATH``. Any other extension is refused in one line before anything is drawn.
"""

from __future__ import annotations

import os
from pathlib import Path

from backdoor_sweep.errors import SweepError

#: what ``--out`` may end in
FIGURE_FORMATS = (".html", ".png", ".pdf", ".svg")
#: the browser kaleido drives when BROWSER_PATH is not set
DEFAULT_BROWSER = Path("/usr/bin/chromium")
#: pixels per layout pixel in PNGs (a figure for print)
PNG_SCALE = 2
#: the width of a static figure when the figure does not set one (it is responsive on a page)
STATIC_WIDTH = 1100


def check_figure_path(out: str | Path, what: str = "--out") -> Path:
    """``out`` as a Path if its extension is a figure format; else one line naming the choices."""
    path = Path(out)
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise SweepError(f"{what} must end in {', '.join(FIGURE_FORMATS)}; got {str(path)!r}")
    return path


def browser_path() -> str | None:
    """The browser kaleido will use: ``BROWSER_PATH``, else /usr/bin/chromium, else None (search)."""
    if os.environ.get("BROWSER_PATH"):
        return os.environ["BROWSER_PATH"]
    return str(DEFAULT_BROWSER) if DEFAULT_BROWSER.exists() else None


def write_figure(fig, out: str | Path) -> Path:
    """Write ``fig`` to ``out`` in the format of its extension and return the path.

    Static formats are written to a temporary name and renamed, so a failed export leaves no
    half-written file; a missing browser is one line saying which variable to set.
    """
    path = check_figure_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".html":
        fig.write_html(path, include_plotlyjs=True, full_html=True)
        return path
    browser = browser_path()
    if browser is not None:
        os.environ.setdefault("BROWSER_PATH", browser)
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    width = fig.layout.width or STATIC_WIDTH
    try:
        fig.write_image(
            tmp,
            format=suffix[1:],
            width=width,
            height=fig.layout.height or 500,
            scale=PNG_SCALE if suffix == ".png" else 1,
        )
    except Exception as err:  # kaleido raises its own types (ChromeNotFoundError, timeouts…)
        tmp.unlink(missing_ok=True)
        if type(err).__name__ == "ChromeNotFoundError" or "Chrome" in str(err):
            raise SweepError(
                f"--out {path.suffix} needs a Chrome or Chromium for plotly's static export; "
                f"none found (set BROWSER_PATH, e.g. BROWSER_PATH=/usr/bin/chromium)"
            ) from None
        raise
    os.replace(tmp, path)
    return path
