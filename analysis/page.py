"""The HTML page of a report: one self-contained file that opens offline.

plotly.js is embedded once in the page head; every figure is a ``<div>`` plus a small script that
draws it (`figure_html`). Tables, notes and sections are escaped HTML built here so the report
module only assembles content. No external URL is referenced: no CDN, font or MathJax.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterable, Sequence

_CSS = """
:root { --fg:#1d2127; --muted:#5f6670; --line:#d9dde3; --bg:#f6f7f9; --accent:#1f5fa8; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif; color:var(--fg); background:var(--bg); }
header.top { position:sticky; top:0; z-index:10; background:#fff; border-bottom:1px solid var(--line);
  padding:.5rem 1.5rem; display:flex; gap:1.5rem; align-items:baseline; flex-wrap:wrap; }
header.top h1 { font-size:1.15rem; margin:0; }
header.top nav a { margin-right:1rem; color:var(--accent); text-decoration:none; font-size:.9rem; }
main { max-width:1280px; margin:0 auto; padding:1rem 1.5rem 3rem; }
section.sweep, section.block { background:#fff; border:1px solid var(--line); border-radius:8px;
  padding:1rem 1.25rem; margin:1rem 0; }
h2 { font-size:1.3rem; margin:.2rem 0 .6rem; } h3 { font-size:1.05rem; margin:1.2rem 0 .4rem; }
p.note, .muted { color:var(--muted); font-size:.9rem; }
table { border-collapse:collapse; font-size:.88rem; margin:.4rem 0 .8rem; }
th, td { border-bottom:1px solid var(--line); padding:.25rem .6rem; text-align:left; vertical-align:top; }
th { background:#f0f2f5; font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
.scroll { overflow-x:auto; }
.facts { display:grid; grid-template-columns:repeat(auto-fit,minmax(380px,1fr)); gap:0 1.5rem; }
.choice { border-left:4px solid var(--accent); background:#f3f7fc; padding:.6rem .9rem; margin:.6rem 0; }
.choice .config { font-size:1.1rem; font-weight:600; }
.verdict { border:2px solid var(--accent); border-radius:8px; background:#f3f7fc; padding:.8rem 1.1rem; margin:.4rem 0 1rem; }
.verdict .config { font-size:1.35rem; font-weight:700; margin:.1rem 0 .3rem; }
.verdict ul.limits { margin:.3rem 0 .6rem; padding-left:1.2rem; }
.verdict ul.limits li { font-weight:600; }
.figure { width:100%; margin:.4rem 0 1rem; }
details > summary { cursor:pointer; color:var(--accent); margin:.3rem 0; }
pre { background:#f0f2f5; padding:.6rem; overflow:auto; max-height:420px; font-size:.8rem; }
.error { color:#a4262c; }
"""

_ids = itertools.count(1)


class Raw(str):
    """HTML that is already escaped (a cell or value passed through as is)."""


def esc(value: object) -> str:
    """Escaped text; floats with 4 significant digits."""
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    return html.escape("" if value is None else str(value))


def table_html(
    header: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool] | None = None
) -> str:
    """A plain table; cells are escaped unless given as `Raw`."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for k, cell in enumerate(row):
            cls = ' class="num"' if numeric and k < len(numeric) and numeric[k] else ""
            text = str(cell) if isinstance(cell, Raw) else esc(cell)
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def facts_html(pairs: Iterable[tuple[str, object]]) -> str:
    """A two-column key/value table."""
    rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{v if isinstance(v, Raw) else esc(v)}</td></tr>"
        for k, v in pairs
    )
    return f"<table>{rows}</table>"


def figure_html(fig, height: int | None = None, max_width: int | None = None) -> str:
    """A plotly figure as a ``<div>`` and its drawing script (plotly.js is in the page head)."""
    div_id = f"fig{next(_ids)}"
    h = height or int(fig.layout.height or 450)
    fig.update_layout(autosize=True, width=None)
    snippet = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        div_id=div_id,
        default_width="100%",
        default_height=f"{h}px",
        config={
            "responsive": True,
            "displaylogo": False,
            "toImageButtonOptions": {"format": "png"},
        },
    )
    style = f' style="max-width:{max_width}px"' if max_width else ""
    return f'<div class="figure" data-figure="{div_id}"{style}>{snippet}</div>'


def section_html(anchor: str, title: str, body: str, kind: str = "block") -> str:
    return f'<section class="{kind}" id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def page_html(title: str, nav: Sequence[tuple[str, str]], body: str, footer: str = "") -> str:
    """The whole page with plotly.js inlined once."""
    from plotly.offline import get_plotlyjs

    links = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f'<header class="top"><h1>{esc(title)}</h1><nav>{links}</nav></header>'
        f'<main>{body}<p class="note">{footer}</p></main></body></html>\n'
    )
