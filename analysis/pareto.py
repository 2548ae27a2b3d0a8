"""Pareto fronts: configurations no other configuration beats on both clean accuracy and attack.

A point is one configuration of the choice axes, aggregated over seeds and attack settings exactly
as `select_robust` does (`configuration_metric`). ``x`` is maximised (clean accuracy), ``y`` is
minimised (ASR, slope, worst-case ASR). A configuration is on the front when no other one has
x at least as high and y at least as low with one of them strictly better; identical points are
all on the front. Compute first (`pareto_points`, `pareto_front`), draw second (`render_pareto`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.select import choice_axes, configuration_metric, format_choice
from backdoor_sweep.errors import SweepError


def non_dominated(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Boolean mask of the points not dominated (maximise ``x``, minimise ``y``); NaN is never on it."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite = np.isfinite(x) & np.isfinite(y)
    xs, ys = x[:, None], y[:, None]
    # dominated[i, j]: point j dominates point i
    dominates = (x[None, :] >= xs) & (y[None, :] <= ys) & ((x[None, :] > xs) | (y[None, :] < ys))
    dominates &= finite[None, :]
    return finite & ~dominates.any(axis=1)


def pareto_points(
    df: pd.DataFrame, x: str = "clean_acc", y: str = "asr", axes: list[str] | None = None
) -> pd.DataFrame:
    """Every configuration with ``x``, ``y`` (mean, std, n over seeds) and ``on_front``."""
    axes = choice_axes(df) if axes is None else list(axes)
    if not axes:
        raise SweepError(
            "axes must name at least one varying learner/defence parameter; the sweep has none"
        )
    for a in axes:
        if a not in df.columns:
            raise SweepError(f"axes must be columns of the store; got {a!r}")
    if x == y:
        raise SweepError(f"x and y must differ; got {x!r} twice")
    keep = ["mean", "std", "n"]
    px = configuration_metric(df, axes, x)[axes + keep].rename(
        columns={"mean": x, "std": f"{x}_std", "n": f"{x}_n"}
    )
    py = configuration_metric(df, axes, y)[axes + keep].rename(
        columns={"mean": y, "std": f"{y}_std", "n": f"{y}_n"}
    )
    points = px.merge(py, on=axes, how="outer")
    points["on_front"] = non_dominated(points[x].to_numpy(), points[y].to_numpy())
    points["label"] = [format_choice({a: r[a] for a in axes}) for r in points.to_dict("records")]
    return points.sort_values([x, y], ascending=[False, True], kind="mergesort").reset_index(
        drop=True
    )


def pareto_front(
    df: pd.DataFrame, x: str = "clean_acc", y: str = "asr", axes: list[str] | None = None
) -> pd.DataFrame:
    """The non-dominated configurations, best ``x`` first (then lowest ``y``)."""
    points = pareto_points(df, x=x, y=y, axes=axes)
    return points[points["on_front"]].drop(columns="on_front").reset_index(drop=True)


def render_pareto(
    points: pd.DataFrame,
    x: str = "clean_acc",
    y: str = "asr",
    highlight: dict | None = None,
    title: str | None = None,
    clean_tolerance: float | None = None,
):
    """A plotly scatter of every configuration, the front joined by a line, ``highlight`` ringed;
    with ``clean_tolerance`` the band of ``x`` more than the tolerance below the best is grey."""
    import plotly.graph_objects as go

    from analysis.scales import EXCLUDED_GREY

    fig = go.Figure()
    finite = points[x][np.isfinite(points[x].astype(float))]
    if clean_tolerance is not None and not finite.empty:
        edge = float(finite.max()) - clean_tolerance
        low = min(float(finite.min()), edge)
        if float(finite.min()) < edge:
            fig.add_vrect(
                x0=low - 0.02,
                x1=edge,
                fillcolor=EXCLUDED_GREY,
                opacity=0.35,
                line_width=0,
                layer="below",
                annotation_text=f"outside the clean-accuracy tolerance ({clean_tolerance:g})",
                annotation_position="top left",
                annotation_font_size=10,
            )
    hover = f"%{{text}}<br>{x}=%{{x:.3f}} ± %{{customdata[0]:.3f}}<br>{y}=%{{y:.3f}} ± %{{customdata[1]:.3f}}<extra></extra>"
    for on, name, style in (
        (False, "dominated", {"color": "#9aa0a6", "size": 8}),
        (True, "Pareto front", {"color": "#d62728", "size": 11}),
    ):
        part = points[points["on_front"] == on]
        if part.empty:
            continue
        if on:
            part = part.sort_values(x)
        fig.add_trace(
            go.Scatter(
                x=part[x],
                y=part[y],
                text=part["label"],
                name=name,
                mode="lines+markers" if on else "markers",
                marker=style,
                line={"shape": "hv", "color": style["color"]} if on else None,
                customdata=np.column_stack(
                    [part[f"{x}_std"].fillna(0), part[f"{y}_std"].fillna(0)]
                ),
                hovertemplate=hover,
            )
        )
    if highlight:
        mask = np.ones(len(points), dtype=bool)
        for k, v in highlight.items():
            mask &= (points[k] == v).to_numpy()
        sel = points[mask]
        if not sel.empty:
            fig.add_trace(
                go.Scatter(
                    x=sel[x],
                    y=sel[y],
                    text=sel["label"],
                    name="recommended",
                    mode="markers",
                    marker={
                        "symbol": "circle-open",
                        "size": 20,
                        "line": {"width": 3},
                        "color": "#1f77b4",
                    },
                    hovertemplate="recommended: %{text}<extra></extra>",
                )
            )
    fig.update_layout(
        title=title or f"Pareto front: maximise {x}, minimise {y}",
        xaxis_title=f"{x} (higher is better)",
        yaxis_title=f"{y} (lower is better)",
        height=420,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig
