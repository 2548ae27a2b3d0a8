"""Heatmaps: compute the data first (`heatmap_info`), draw it second (`render_heatmap`).

A cell is the metric aggregated over the seeds and over every axis not shown (x, y, facet):
``mean`` (default), ``worst`` (the max for ASR-like metrics, min for accuracies) or ``best``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sweep.errors import SweepError

#: metrics where larger is better for the defender (so "worst" is the minimum)
HIGHER_IS_BETTER = {"clean_acc", "robust_acc"}


@dataclass
class HeatmapPanel:
    facet_value: object
    z: np.ndarray  # (len(y), len(x)) aggregate
    std: np.ndarray
    n: np.ndarray


@dataclass
class HeatmapInfo:
    metric: str
    x: str
    y: str
    facet: str | None
    agg: str
    x_values: list
    y_values: list
    panels: list[HeatmapPanel] = field(default_factory=list)


def _check_column(df: pd.DataFrame, name: str, what: str) -> None:
    if name not in df.columns:
        cols = ", ".join(sorted(map(str, df.columns)))
        raise SweepError(f"{what} must be a column of the store ({cols}); got {name!r}")


def heatmap_info(df: pd.DataFrame, x: str, y: str, metric: str, facet: str | None = None,
                 agg: str = "mean") -> HeatmapInfo:
    """Aggregate ``metric`` on the (y, x) grid, one panel per value of ``facet``."""
    for name, what in ((x, "--x"), (y, "--y"), (metric, "--metric")):
        _check_column(df, name, what)
    if facet:
        _check_column(df, facet, "--facet")
    if agg not in ("mean", "worst", "best"):
        raise SweepError(f"--agg must be one of mean, worst, best; got {agg!r}")
    ok = df[df["status"] == "ok"] if "status" in df else df
    ok = ok[pd.to_numeric(ok[metric], errors="coerce").notna()]
    if ok.empty:
        raise SweepError(f"--metric {metric!r} has no values in the selected rows")
    ok = ok.assign(**{metric: pd.to_numeric(ok[metric])})
    x_values = sorted(ok[x].dropna().unique().tolist())
    y_values = sorted(ok[y].dropna().unique().tolist())
    facets = sorted(ok[facet].dropna().unique().tolist()) if facet else [None]
    info = HeatmapInfo(metric, x, y, facet, agg, x_values, y_values)
    worst_is_min = metric in HIGHER_IS_BETTER
    for fv in facets:
        part = ok if fv is None else ok[ok[facet] == fv]
        if agg == "mean":
            per_cell = part.groupby([y, x])[metric]
            z, std, n = per_cell.mean(), per_cell.std(), per_cell.count()
        else:
            # aggregate seeds first (mean), then take the worst/best over the hidden axes
            others = [c for c in part.columns if c not in (x, y, metric, "seed") and c != facet]
            seed_mean = part.groupby([y, x, *[c for c in others if c in _axes(part)]], dropna=False)[metric].mean()
            pick_min = worst_is_min == (agg == "worst")
            grouped = seed_mean.groupby(level=[0, 1])
            z = grouped.min() if pick_min else grouped.max()
            std, n = grouped.std(), grouped.count()
        shape = (len(y_values), len(x_values))
        zs, ss, ns = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, dtype=int)
        for (yv, xv), val in z.items():
            i, j = y_values.index(yv), x_values.index(xv)
            zs[i, j], ss[i, j], ns[i, j] = val, std.get((yv, xv), np.nan), int(n.get((yv, xv), 0))
        info.panels.append(HeatmapPanel(fv, zs, ss, ns))
    return info


def _axes(df: pd.DataFrame) -> list[str]:
    """Configuration columns that vary in ``df`` (the hidden grid axes)."""
    from analysis.load import config_columns

    return [c for c in config_columns(df) if df[c].nunique(dropna=False) > 1]


def render_heatmap(info: HeatmapInfo, title: str | None = None):
    """A plotly figure: one heatmap panel per facet value, hover with mean, std and n."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cols = len(info.panels)
    names = [f"{info.facet} = {p.facet_value}" if info.facet else "" for p in info.panels]
    fig = make_subplots(rows=1, cols=cols, subplot_titles=names, horizontal_spacing=0.06)
    finite = np.concatenate([p.z[np.isfinite(p.z)] for p in info.panels] or [np.array([0.0])])
    zmin, zmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    for k, panel in enumerate(info.panels, start=1):
        custom = np.dstack([panel.std, panel.n])
        fig.add_trace(
            go.Heatmap(
                z=panel.z,
                x=[str(v) for v in info.x_values],
                y=[str(v) for v in info.y_values],
                customdata=custom,
                zmin=zmin,
                zmax=zmax,
                colorscale="Viridis" if info.metric not in HIGHER_IS_BETTER else "Cividis",
                showscale=k == cols,
                colorbar={"title": info.metric},
                hovertemplate=(
                    f"{info.x}=%{{x}}<br>{info.y}=%{{y}}<br>{info.agg} {info.metric}=%{{z:.3f}}"
                    "<br>std=%{customdata[0]:.3f}<br>n=%{customdata[1]}<extra></extra>"
                ),
            ),
            row=1,
            col=k,
        )
        fig.update_xaxes(title_text=info.x, type="category", row=1, col=k)
        fig.update_yaxes(title_text=info.y if k == 1 else None, type="category", row=1, col=k)
    fig.update_layout(
        title=title or f"{info.agg} {info.metric} over seeds" + (f", by {info.facet}" if info.facet else ""),
        height=420,
        width=max(520, 360 * cols),
    )
    return fig
