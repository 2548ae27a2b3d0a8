"""Heatmaps: compute the data first (`heatmap_info`), draw it second (`render_heatmap`).

Any metric over any two axes, one panel per combination of the facet columns' values. A cell
aggregates the rows of its (x, y, facets) value over the seeds and every axis not shown:

- ``mean``: the mean of those rows (std and n over the same rows);
- ``worst`` / ``best``: the seed-mean of each hidden setting (e.g. each trigger size), then the
  worst / best of them — the max for metrics where lower is better for the defender (ASR, slope),
  the min for accuracies; std and n are the seed spread of that setting, ``where`` names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from backdoor_sweep.errors import SweepError
from sweep.schema import higher_is_better

AGGREGATES = ("mean", "worst", "best")


@dataclass
class HeatmapPanel:
    """One panel: ``z[i, j]`` is the aggregate at ``y_values[i]``, ``x_values[j]``."""

    facet_values: dict  # facet column -> value; empty without facets
    z: np.ndarray
    std: np.ndarray
    n: np.ndarray
    where: np.ndarray  # worst/best: the hidden setting picked per cell ("" for mean)

    @property
    def title(self) -> str:
        return ", ".join(f"{k} = {_short(v)}" for k, v in self.facet_values.items())


@dataclass
class HeatmapInfo:
    metric: str
    x: str
    y: str
    facets: list[str]
    agg: str
    x_values: list
    y_values: list
    hidden: list[str] = field(default_factory=list)  # varying axes aggregated over
    panels: list[HeatmapPanel] = field(default_factory=list)

    @property
    def facet(self) -> str | None:
        return self.facets[0] if self.facets else None


def _check_column(df: pd.DataFrame, name: str, what: str) -> None:
    if name not in df.columns:
        cols = ", ".join(sorted(map(str, df.columns)))
        raise SweepError(f"{what} must be a column of the store ({cols}); got {name!r}")


def heatmap_info(
    df: pd.DataFrame,
    x: str,
    y: str,
    metric: str,
    facet: str | list[str] | tuple[str, ...] | None = None,
    agg: str = "mean",
) -> HeatmapInfo:
    """Aggregate ``metric`` on the (y, x) grid, one panel per combination of ``facet`` values."""
    facets = [facet] if isinstance(facet, str) else list(facet or [])
    for name, what in (
        (x, "--x"),
        (y, "--y"),
        (metric, "--metric"),
        *((f, "--facet") for f in facets),
    ):
        _check_column(df, name, what)
    if x == y:
        raise SweepError(f"--x and --y must be different columns; got {x!r} for both")
    if set(facets) & {x, y} or len(set(facets)) != len(facets):
        raise SweepError(
            f"--facet must name columns other than --x and --y, each once; got {facets}"
        )
    if agg not in AGGREGATES:
        raise SweepError(f"--agg must be one of {', '.join(AGGREGATES)}; got {agg!r}")
    ok = df[df["status"] == "ok"] if "status" in df else df
    ok = ok.assign(**{metric: pd.to_numeric(ok[metric], errors="coerce")})
    ok = ok[ok[metric].notna()]
    if ok.empty:
        raise SweepError(f"--metric {metric!r} has no values in the selected rows")
    shown = [*facets, y, x]
    hidden = [c for c in _axes(ok) if c not in shown]
    info = HeatmapInfo(metric, x, y, facets, agg, _sorted(ok[x]), _sorted(ok[y]), hidden)
    if agg == "mean":
        g = ok.groupby(shown, dropna=False)[metric]
        cells = pd.DataFrame({"z": g.mean(), "std": g.std(), "n": g.count()}).reset_index()
        cells["where"] = ""
    else:
        pick_min = higher_is_better(metric) == (agg == "worst")
        g = ok.groupby(shown + hidden, dropna=False)[metric]
        per = pd.DataFrame({"z": g.mean(), "std": g.std(), "n": g.count()}).reset_index()
        order = per.sort_values("z", ascending=pick_min, kind="mergesort")
        cells = order.groupby(shown, dropna=False, sort=False).head(1).copy()
        cells["where"] = [
            ", ".join(f"{h}={_short(r[h])}" for h in hidden) for r in cells.to_dict("records")
        ]
    combos = (
        [()]
        if not facets
        else sorted(
            {tuple(r) for r in cells[facets].itertuples(index=False, name=None)}, key=_sort_key
        )
    )
    xi = {v: j for j, v in enumerate(info.x_values)}
    yi = {v: i for i, v in enumerate(info.y_values)}
    shape = (len(info.y_values), len(info.x_values))
    for combo in combos:
        part = cells
        for f, v in zip(facets, combo, strict=True):
            part = part[part[f] == v]
        zs, ss = np.full(shape, np.nan), np.full(shape, np.nan)
        ns, ws = np.zeros(shape, dtype=int), np.full(shape, "", dtype=object)
        for r in part.to_dict("records"):
            if r[y] not in yi or r[x] not in xi:
                continue
            i, j = yi[r[y]], xi[r[x]]
            zs[i, j], ss[i, j], ns[i, j], ws[i, j] = r["z"], r["std"], int(r["n"]), r["where"]
        info.panels.append(HeatmapPanel(dict(zip(facets, combo, strict=True)), zs, ss, ns, ws))
    return info


def _axes(df: pd.DataFrame) -> list[str]:
    """The varying component parameters of ``df`` (the grid axes a cell aggregates over)."""
    from analysis.select import grid_axes

    return grid_axes(df)


def _sort_key(v):
    items = v if isinstance(v, tuple) else (v,)
    return tuple(
        (0, float(i), "") if isinstance(i, (int, float, np.number)) else (1, 0.0, str(i))
        for i in items
    )


def _sorted(col: pd.Series) -> list:
    vals = [v.item() if hasattr(v, "item") else v for v in col.dropna().unique()]
    return sorted(vals, key=_sort_key)


def _short(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


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
    the panels wrap after ``max_cols``. The width follows the page (responsive).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

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
        rows, cols = len(row_vals), len(col_vals)
    else:
        cols = max(1, min(max_cols, len(panels)))
        rows = math.ceil(len(panels) / cols)
        place = {id(p): (k // cols + 1, k % cols + 1) for k, p in enumerate(panels)}
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
        zrange = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    n_cells = len(info.x_values) * len(info.y_values)
    hover = (
        f"{info.x}=%{{x}}<br>{info.y}=%{{y}}<br>{info.agg} {info.metric}=%{{z:.3f}}"
        "<br>std=%{customdata[0]:.3f}<br>n=%{customdata[1]}"
    )
    if info.agg != "mean":
        hover += "<br>at %{customdata[2]}"
    for k, p in enumerate(panels):
        r, c = place[id(p)]
        fig.add_trace(
            go.Heatmap(
                z=p.z,
                x=[_short(v) for v in info.x_values],
                y=[_short(v) for v in info.y_values],
                customdata=np.dstack([p.std, p.n, p.where]).astype(object),
                zmin=zrange[0],
                zmax=zrange[1],
                colorscale="Cividis" if higher_is_better(info.metric) else "Viridis",
                showscale=k == 0,
                colorbar={"title": {"text": info.metric}, "len": 0.9},
                texttemplate="%{z:.2f}" if show_values and n_cells <= 64 else None,
                textfont={"size": 10},
                hovertemplate=hover + (f"<br>{p.title}" if p.title else "") + "<extra></extra>",
                name=p.title or info.metric,
            ),
            row=r,
            col=c,
        )
        fig.update_xaxes(title_text=info.x if r == rows else None, type="category", row=r, col=c)
        fig.update_yaxes(title_text=info.y if c == 1 else None, type="category", row=r, col=c)
    fig.update_annotations(font_size=11)
    default = f"{info.agg} {info.metric}" + (f" by {', '.join(info.facets)}" if info.facets else "")
    fig.update_layout(
        title=title or default,
        height=90 + panel_height * rows,
        margin={"l": 60, "r": 20, "t": 70, "b": 50},
    )
    return fig
