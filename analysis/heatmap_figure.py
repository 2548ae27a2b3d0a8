"""Drawing a heatmap computed by `analysis.heatmap` (plots compute first, draw second).

One heatmap per panel on a grid with a shared colour scale: rates on the fixed range [0, 1], the
colour meaning of `analysis.scales` (yellow is better for the defender), the cells outside the
clean-accuracy tolerance grey, the marked configuration outlined, and a title that says what each
cell aggregates over.
"""

from __future__ import annotations

import math

import numpy as np

from analysis.heatmap import HeatmapInfo, HeatmapPanel, short_text
from analysis.scales import CHOSEN_COLOUR, EXCLUDED_GREY, better_word, colour_scale, value_range


def _place(info: HeatmapInfo, max_cols: int) -> tuple[int, int, dict]:
    """(rows, cols, panel id -> (row, col)): two facets on a grid, else wrapped after max_cols."""
    panels = info.panels
    if len(info.facets) == 2:
        col_vals = list(dict.fromkeys(p.facet_values[info.facets[0]] for p in panels))
        row_vals = list(dict.fromkeys(p.facet_values[info.facets[1]] for p in panels))
        place = {
            id(p): (
                row_vals.index(p.facet_values[info.facets[1]]) + 1,
                col_vals.index(p.facet_values[info.facets[0]]) + 1,
            )
            for p in panels
        }
        return len(row_vals), len(col_vals), place
    cols = max(1, min(max_cols, len(panels)))
    rows = math.ceil(len(panels) / cols)
    return rows, cols, {id(p): (k // cols + 1, k % cols + 1) for k, p in enumerate(panels)}


def default_title(info: HeatmapInfo) -> str:
    """The metric, the axes, what each cell aggregates and the panels, in one title."""
    over = f"{info.x} × {info.y}" if info.y else info.x
    text = f"{info.metric} over {over}"
    if info.facets:
        text += f", one panel per {' × '.join(info.facets)}"
    legend = _legend(info)
    return f"{text}<br><sup>{info.aggregated_over}</sup>" + (
        f"<br><sup>{legend}</sup>" if legend else ""
    )


def _legend(info: HeatmapInfo) -> str:
    parts = []
    if info.clean_tolerance is not None and any(
        p.excluded is not None and p.excluded.any() for p in info.panels
    ):
        parts.append(
            f"grey: clean accuracy more than {info.clean_tolerance:g} below the best "
            f"({info.best_clean:.3f})"
        )
    if info.mark and any(p.chosen is not None and p.chosen.any() for p in info.panels):
        parts.append("outlined: the recommended configuration")
    return "; ".join(parts)


def render_heatmap(
    info: HeatmapInfo,
    title: str | None = None,
    zrange: tuple[float, float] | None = None,
    max_cols: int = 4,
    panel_height: int = 240,
    show_values: bool = True,
):
    """A plotly figure: one heatmap per panel on a grid, shared colour scale, hover with std and n.

    With two facets the first varies along the columns and the second along the rows; otherwise
    the panels wrap after ``max_cols``. Rates use the fixed range [0, 1] and every metric the
    colour meaning of `analysis.scales` (yellow is better for the defender); excluded cells are
    grey, the marked configuration's cells outlined. The width follows the page (responsive).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = info.panels
    rows, cols, place = _place(info, max_cols)
    titles = [""] * (rows * cols)
    for p in panels:
        r, c = place[id(p)]
        titles[(r - 1) * cols + c - 1] = p.title
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=0.04,
        vertical_spacing=min(0.12, 0.35 / max(rows, 1)) if rows > 1 else 0.1,
    )
    finite = np.concatenate([p.z[np.isfinite(p.z)] for p in panels] or [np.array([])])
    if zrange is None:
        zrange = value_range(info.metric) or (
            (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        )
    scale, reverse = colour_scale(info.metric)
    n_cells = len(info.x_values) * len(info.y_values)
    xs = [short_text(v) for v in info.x_values]
    ys = [short_text(v) for v in info.y_values]
    ylabel = info.y or ""
    hover = (
        f"{info.x}=%{{x}}<br>{ylabel}=%{{y}}<br>{info.agg} {info.metric}=%{{z:.3f}}"
        "<br>std=%{customdata[0]:.3f}<br>n=%{customdata[1]}"
    )
    if info.agg != "mean":
        hover += "<br>at %{customdata[2]}"
    text = "%{z:.2f}" if show_values and n_cells <= 64 else None
    for k, p in enumerate(panels):
        r, c = place[id(p)]
        fig.add_trace(
            go.Heatmap(
                z=p.z,
                x=xs,
                y=ys,
                customdata=np.dstack([p.std, p.n, p.where]).astype(object),
                zmin=zrange[0],
                zmax=zrange[1],
                colorscale=scale,
                reversescale=reverse,
                showscale=k == 0,
                colorbar={
                    "title": {"text": f"{info.metric}<br>{better_word(info.metric)}"},
                    "len": 0.9,
                },
                texttemplate=text,
                textfont={"size": 10},
                hovertemplate=hover + (f"<br>{p.title}" if p.title else "") + "<extra></extra>",
                name=p.title or info.metric,
            ),
            row=r,
            col=c,
        )
        if p.excluded is not None and p.excluded.any():
            fig.add_trace(_grey_cells(p, xs, ys, text), row=r, col=c)
        if p.chosen is not None and p.chosen.any():
            # the marked cells form a rectangle (a cell, a row, a column or the panel): outline it
            ii, jj = np.nonzero(p.chosen)
            fig.add_shape(
                type="rect",
                x0=jj.min() - 0.5,
                x1=jj.max() + 0.5,
                y0=ii.min() - 0.5,
                y1=ii.max() + 0.5,
                line={"color": CHOSEN_COLOUR, "width": 3},
                row=r,
                col=c,
            )
        fig.update_xaxes(title_text=info.x if r == rows else None, type="category", row=r, col=c)
        fig.update_yaxes(title_text=info.y if c == 1 else None, type="category", row=r, col=c)
    fig.update_annotations(font_size=11)
    top = 120 if _legend(info) else 95  # room for the title's lines
    fig.update_layout(
        title=title or default_title(info),
        height=top - 5 + (panel_height if info.y else 120) * rows,
        margin={"l": 60, "r": 20, "t": top, "b": 50},
        plot_bgcolor="white",
    )
    return fig


def _grey_cells(p: HeatmapPanel, xs: list[str], ys: list[str], text: str | None):
    """A grey layer over the excluded cells, their values still written on it."""
    import plotly.graph_objects as go

    z = np.where(p.excluded & np.isfinite(p.z), 1.0, np.nan)
    return go.Heatmap(
        z=z,
        x=xs,
        y=ys,
        text=[
            [f"{v:.2f}" if np.isfinite(v) and e else "" for v, e in zip(row, ex, strict=True)]
            for row, ex in zip(p.z, p.excluded, strict=True)
        ],
        texttemplate="%{text}" if text else None,
        textfont={"size": 10, "color": "#555"},
        colorscale=[[0, EXCLUDED_GREY], [1, EXCLUDED_GREY]],
        showscale=False,
        hovertemplate="outside the clean-accuracy tolerance<extra></extra>",
        name="outside the clean-accuracy tolerance",
    )
