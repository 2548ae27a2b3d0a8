"""Which grid axis moves a metric most: a variance decomposition over the grid.

For a metric, the variance of its results splits exactly into the variance *between* grid cells
(the seed-means) and the variance *between seeds* inside a cell. The between-cell part splits
further into one *main effect* per axis — the variance of the metric's mean at each value of that
axis, Σ_v w_v (mean_v − mean)², w_v the share of results at value v — and the *interactions*
(what the main effects leave). On a full grid this is the first-order term of a functional ANOVA
(fANOVA) computed exactly over the grid's uniform measure, where Optuna's fANOVA estimates the
same quantity from a random-forest surrogate over a continuous space. Shares are of the total
variance, so the axes, the interactions and the seeds add up to 1 and a reader sees how much is
left to chance.

Results are the ones `select_robust` aggregates (docs/science.md §9): clean accuracy
over every result, ASR and the other attack metrics over the poisoned ones (``n_poison > 0``).
Missing cells (failed results) make the design unbalanced: the main effects are then no longer
orthogonal and the interaction share is clipped at 0 (``balanced`` says which).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.select import grid_axes
from backdoor_sweep.errors import SweepError
from sweep.schema import METRICS

DEFAULT_METRICS = ("asr", "clean_acc")
INTERACTIONS = "interactions"
SEEDS = "seeds"


@dataclass
class MetricImportance:
    """The decomposition of one metric: shares of its total variance (they sum to 1)."""

    metric: str
    axes: list[str]
    main: dict[str, float]  # axis -> main-effect share
    interactions: float
    seeds: float
    total_variance: float
    n_results: int
    n_cells: int
    balanced: bool

    def ranked(self) -> list[tuple[str, float]]:
        """Axes by main-effect share, largest first."""
        return sorted(self.main.items(), key=lambda kv: -kv[1])


@dataclass
class ImportanceInfo:
    metrics: list[MetricImportance] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def axes(self) -> list[str]:
        seen: dict[str, None] = {}
        for m in self.metrics:
            seen.update(dict.fromkeys(m.axes))
        return list(seen)


def _rows(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    ok = df[df["status"] == "ok"] if "status" in df else df
    if metric not in ok.columns:
        raise SweepError(f"--metric must be a metric this sweep recorded; got {metric!r}")
    rows = ok.assign(**{metric: pd.to_numeric(ok[metric], errors="coerce")})
    if not (metric in METRICS and METRICS[metric].clean) and "n_poison" in rows.columns:
        attacked = rows[pd.to_numeric(rows["n_poison"], errors="coerce") > 0]
        rows = attacked if not attacked.empty else rows
    return rows[rows[metric].notna()]


def decompose(df: pd.DataFrame, metric: str, axes: list[str] | None = None) -> MetricImportance:
    """The variance decomposition of ``metric`` over ``axes`` (default: the varying grid axes)."""
    rows = _rows(df, metric)
    if rows.empty:
        raise SweepError(f"--metric {metric!r} has no values in the successful results")
    axes = [a for a in (grid_axes(rows) if axes is None else axes) if rows[a].nunique() > 1]
    y = rows[metric].to_numpy(dtype=float)
    n = len(y)
    grand = y.mean()
    total = float(((y - grand) ** 2).mean())
    if not axes:
        return MetricImportance(metric, [], {}, 0.0, 1.0 if total > 0 else 0.0, total, n, 1, True)
    cells = rows.groupby(axes, dropna=False)[metric]
    cell_mean = cells.transform("mean").to_numpy(dtype=float)
    within = float(((y - cell_mean) ** 2).mean())
    between = total - within
    main = {}
    for a in axes:
        level_mean = rows.groupby(a, dropna=False)[metric].transform("mean").to_numpy(dtype=float)
        main[a] = float(((level_mean - grand) ** 2).mean())
    counts = cells.size()
    n_full = int(np.prod([rows[a].nunique() for a in axes]))
    balanced = len(counts) == n_full and counts.nunique() == 1
    inter = max(between - sum(main.values()), 0.0)
    if total <= 0:  # a constant metric: nothing to explain
        return MetricImportance(
            metric, axes, dict.fromkeys(axes, 0.0), 0.0, 0.0, 0.0, n, len(counts), balanced
        )
    return MetricImportance(
        metric,
        axes,
        {a: v / total for a, v in main.items()},
        inter / total,
        within / total,
        total,
        n,
        len(counts),
        balanced,
    )


def importance_info(
    df: pd.DataFrame, metrics: list[str] | tuple[str, ...] | None = None
) -> ImportanceInfo:
    """The decomposition of each metric (default: ASR and clean accuracy, those recorded)."""
    wanted = list(metrics) if metrics else [m for m in DEFAULT_METRICS if m in df.columns]
    if not wanted:
        raise SweepError(
            "--metric must name recorded metrics; this sweep has neither asr nor clean_acc"
        )
    info = ImportanceInfo()
    for m in wanted:
        imp = decompose(df, m)
        info.metrics.append(imp)
        if imp.total_variance == 0:
            info.notes.append(f"{m} is the same in every result: there is no variance to share")
            continue
        if imp.n_results == imp.n_cells and imp.axes:
            info.notes.append(
                f"{m}: one result per cell (one seed): the spread between seeds is not measured "
                "and is part of the interactions"
            )
        if not imp.balanced:
            info.notes.append(
                f"{m}: {imp.n_cells} cells with unequal numbers of results (failed results?): "
                "the main effects are not orthogonal; interactions clipped at 0"
            )
    return info


def render_importance(info: ImportanceInfo, title: str | None = None):
    """Horizontal bars: per axis (then interactions and seeds) the share of each metric's variance."""
    import plotly.graph_objects as go

    labels = [*info.axes, INTERACTIONS, SEEDS]
    fig = go.Figure()
    for m in info.metrics:
        shares = [m.main.get(a, np.nan) for a in info.axes] + [m.interactions, m.seeds]
        fig.add_trace(
            go.Bar(
                y=labels,
                x=shares,
                name=m.metric,
                orientation="h",
                text=[f"{s:.0%}" if np.isfinite(s) else "" for s in shares],
                textposition="outside",
                hovertemplate=f"{m.metric}: %{{y}} %{{x:.1%}} of the variance<extra></extra>",
            )
        )
    fig.update_layout(
        title=title
        or "what moves each metric: share of its variance<br><sup>main effect of each grid "
        "axis, their interactions and the spread between seeds (they sum to 100%)</sup>",
        barmode="group",
        xaxis={"range": [0, 1.08], "tickformat": ".0%", "title": "share of variance"},
        yaxis={"autorange": "reversed"},
        height=140 + 34 * len(labels) * max(1, len(info.metrics)),
        margin={"l": 140, "r": 20, "t": 80, "b": 50},
        legend={"orientation": "h", "y": -0.15},
        plot_bgcolor="white",
    )
    return fig
