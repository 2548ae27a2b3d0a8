"""Searches seen from the store: sampled points, the best choice so far, the screen, in words.

A search (``search:`` in a spec, `sweep.search`) leaves configurations that are not a grid:
Optuna's and random search's sampled values, a slope screen's two stages. Compute first, draw
second, as for heatmaps:

- `decision_rows`: the rows the robust choice reads — a slope screen's stage-one rows (one probe
  attack only, ``stage = "screen"``) are left out, as `analysis.select` leaves them out;
- `is_grid` / `scatter_info` / `render_scatter`: where the sampled (x, y) values do not form a
  grid, one point per configuration coloured by a metric aggregated as the robust choice
  aggregates it (so ``worst_asr`` works), on log axes where the values span decades;
- `best_so_far_info` / `render_best_so_far`: the robust choice had the search stopped after each
  configuration (in the order they finished), its objective against the results used so far;
- `screen_table`, `search_summary_lines`, `search_section`: the screen's table, the lines
  ``backdoor-sweep run`` prints and the report's "search" part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.page import esc, facts_html, figure_html, table_html
from analysis.select import choice_axes, configuration_metric, format_choice, select_robust
from backdoor_sweep.errors import SweepError
from sweep.search import FULL_STAGE, SCREEN_STAGE, STAGE_COLUMN


def decision_rows(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without a slope screen's stage-one rows."""
    if STAGE_COLUMN not in df.columns:
        return df
    return df[df[STAGE_COLUMN] != SCREEN_STAGE]


def is_grid(df: pd.DataFrame, x: str, y: str) -> bool:
    """True when every (x, y) combination of the values present has rows (a full grid)."""
    pairs = df[[x, y]].drop_duplicates()
    return len(pairs) == df[x].nunique(dropna=False) * df[y].nunique(dropna=False)


@dataclass
class ScatterInfo:
    """One point per configuration: ``x``, ``y``, the metric's mean, std and n over seeds."""

    x: str
    y: str
    metric: str
    points: pd.DataFrame
    log_x: bool = False
    log_y: bool = False


def scatter_info(
    df: pd.DataFrame, x: str, y: str, metric: str, axes: list[str] | None = None
) -> ScatterInfo:
    """Aggregate ``metric`` per configuration of ``axes`` (default: the choice axes) at (x, y)."""
    for name, what in ((x, "--x"), (y, "--y")):
        if name not in df.columns:
            raise SweepError(f"{what} must be a column of the store; got {name!r}")
    axes = list(dict.fromkeys([x, y, *(choice_axes(df) if axes is None else axes)]))
    points = configuration_metric(df, axes, metric).rename(columns={"mean": metric})
    points["label"] = [format_choice({a: r[a] for a in axes}) for r in points.to_dict("records")]
    return ScatterInfo(x, y, metric, points, _log(points[x]), _log(points[y]))


def _log(values: pd.Series) -> bool:
    v = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(v) > 1 and (v > 0).all() and v.max() / v.min() >= 100)


def render_scatter(info: ScatterInfo, title: str | None = None, zrange=None):
    """A plotly scatter: the sampled points coloured by the metric, hover with seeds' spread."""
    import plotly.graph_objects as go

    p = info.points
    fig = go.Figure(
        go.Scatter(
            x=p[info.x],
            y=p[info.y],
            mode="markers",
            text=p["label"],
            customdata=np.column_stack([p[info.metric], p["std"].fillna(0), p["n"]]),
            marker={
                "size": 12,
                "color": p[info.metric],
                "colorscale": "Viridis",
                "cmin": zrange[0] if zrange else None,
                "cmax": zrange[1] if zrange else None,
                "colorbar": {"title": {"text": info.metric}},
                "line": {"width": 1, "color": "#333"},
            },
            hovertemplate="%{text}<br>"
            + info.metric
            + "=%{customdata[0]:.3f} ± %{customdata[1]:.3f} (n=%{customdata[2]})<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=info.x, type="log" if info.log_x else None)
    fig.update_yaxes(title_text=info.y, type="log" if info.log_y else None)
    fig.update_layout(
        title=title or f"{info.metric} at the sampled ({info.x}, {info.y})",
        height=420,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig


@dataclass
class BestSoFar:
    """The robust choice after each configuration, against the results used until then."""

    objective: str
    clean_tolerance: float
    fits: list[int] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)


def best_so_far_info(
    df: pd.DataFrame, objective: str = "worst_asr", clean_tolerance: float = 0.01
) -> BestSoFar:
    """Order trials by when they finished; after each one that the choice reads, choose again.

    ``fits`` counts every stored result up to then, a screen's stage one included (it was paid
    for); a trial whose results all failed moves the count and keeps the choice.
    """
    if "trial_id" not in df.columns or df.empty:
        raise SweepError("best-so-far needs stored results with trial ids; got none")
    stamp = "finished_at" if "finished_at" in df.columns else None
    order = (
        df.groupby("trial_id", sort=False)[stamp].max().sort_values(kind="mergesort").index
        if stamp
        else df["trial_id"].drop_duplicates()
    )
    sizes = df.groupby("trial_id", sort=False).size()
    decide = decision_rows(df)
    axes = choice_axes(decide)
    info = BestSoFar(objective, clean_tolerance)
    seen: list[str] = []
    used = 0
    for tid in order:
        used += int(sizes[tid])
        seen.append(tid)
        if tid not in set(decide["trial_id"]):
            continue
        part = decide[decide["trial_id"].isin(seen)]
        try:
            sel = select_robust(
                part, clean_tolerance=clean_tolerance, objective=objective, axes=axes
            )
        except SweepError:
            value, label = None, "no eligible configuration yet"
        else:
            value, label = sel.metrics[objective]["mean"], format_choice(sel.choice)
        info.fits.append(used)
        info.values.append(value)
        info.choices.append(label)
    return info


def render_best_so_far(info: BestSoFar, full_grid: int | None = None, title: str | None = None):
    """The objective of the choice so far against results used; the full grid's cost marked."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Scatter(
            x=info.fits,
            y=info.values,
            text=info.choices,
            mode="lines+markers",
            line={"shape": "hv"},
            name="choice so far",
            hovertemplate="after %{x} results: %{text}<br>"
            + info.objective
            + "=%{y:.3f}<extra></extra>",
        )
    )
    if full_grid:
        fig.add_vline(x=full_grid, line_dash="dash", annotation_text="full grid")
    fig.update_layout(
        title=title or f"{info.objective} of the robust choice so far",
        xaxis_title="results (fits) used",
        yaxis_title=f"{info.objective} of the choice (lower is better)",
        height=380,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig


# -- words: the run's summary and the report -------------------------------------------------
def screen_table(search: dict) -> pd.DataFrame:
    """The screen's table recorded in sweep.json: one row per configuration."""
    return pd.DataFrame(search.get("table", []))


def search_summary_lines(meta: dict) -> list[str]:
    """What ``backdoor-sweep run`` prints about a search, from its sweep.json record."""
    search = meta.get("search") or {}
    if not search:
        return []
    if search.get("strategy") == "slope_screen":
        stages = search.get("stage_results", {})
        one, two = stages.get(SCREEN_STAGE, 0), stages.get(FULL_STAGE, 0)
        full = search.get("full_grid_results") or 0
        table = screen_table(search)
        lines = [
            f"  slope screen: stage one ran {one} results ({len(table)} configurations at the "
            f"probe {format_choice(search.get('probe', {}))}, every seed)",
        ]
        if search.get("kept") is not None and "eligible" in search:
            lines.append(
                f"  kept {len(search['kept'])} of {search['eligible']} configurations within "
                f"{search.get('clean_tolerance', 0.01):g} of the best clean accuracy, by lowest "
                f"slope: {'; '.join(format_choice(c) for c in search['kept']) or 'none'}"
            )
        used = one + two
        share = f" ({100 * used / full:.0f}%)" if full else ""
        lines.append(
            f"  stage two ran {two} results (the full attack grid); {used} in all{share} of "
            f"the {full} results the full grid would have run"
        )
        fits, grid_fits = search.get("stage_fits"), search.get("full_grid_fits")
        if fits and grid_fits:
            spent = sum(fits.values())
            about = "about " if search.get("full_grid_fits_estimated") else ""
            lines.append(
                f"  learner trainings: {fits.get(SCREEN_STAGE, 0)} in stage one, "
                f"{fits.get(FULL_STAGE, 0)} in stage two; {spent} in all "
                f"({100 * spent / grid_fits:.0f}%) of {about}{grid_fits} for the full grid"
            )
        return lines
    sampler = search.get("sampler") or search.get("algorithm")
    text = (
        f"  search: {sampler} sampled {search.get('configurations', '?')} configurations "
        f"({search.get('results', '?')} results)"
    )
    if search.get("exhausted"):
        text += "; the space ran out of new configurations"
    return [text]


def search_section(df: pd.DataFrame, meta: dict, clean_tolerance: float = 0.01) -> str:
    """The report's part about a search ("" for a plain grid sweep)."""
    search = meta.get("search") or {}
    spec_search = (meta.get("spec") or {}).get("search") or {}
    if not search and spec_search.get("algorithm", "grid") == "grid":
        return ""
    lines = [line.strip() for line in search_summary_lines(meta)]
    parts = ["<h3>search</h3>", "".join(f"<p>{esc(t)}</p>" for t in lines)]
    objective = "worst_asr" if "asr" in df.columns else "asr"
    decide = decision_rows(df)
    axes = choice_axes(decide) or choice_axes(df)
    if len(axes) >= 2 and not is_grid(decide, axes[0], axes[1]):
        for metric, zrange in (("clean_acc", None), (objective, (0.0, 1.0))):
            info = scatter_info(decide, axes[0], axes[1], metric)
            parts.append(figure_html(render_scatter(info, zrange=zrange)))
    if axes and objective in ("worst_asr",):
        from analysis.pareto import pareto_points, render_pareto

        points = pareto_points(decide, x="clean_acc", y=objective, axes=axes)
        try:  # ring the robust choice by the same objective
            chosen = select_robust(
                df, clean_tolerance=clean_tolerance, objective=objective, axes=axes
            ).choice
        except SweepError:
            chosen = None
        title = f"Pareto front of the searched configurations: clean accuracy vs {objective}"
        fig = render_pareto(points, "clean_acc", objective, highlight=chosen, title=title)
        parts.append(figure_html(fig))
    if search.get("strategy") == "slope_screen":
        parts.append(_screen_html(df, search))
    try:
        info = best_so_far_info(df, objective, clean_tolerance)
    except SweepError as err:
        parts.append(f'<p class="error">{esc(err)}</p>')
    else:
        parts.append(figure_html(render_best_so_far(info, search.get("full_grid_results"))))
    return "".join(parts)


def _screen_html(df: pd.DataFrame, search: dict) -> str:
    table = screen_table(search)
    if table.empty:
        return '<p class="muted">stage one has not finished: no screen yet</p>'
    shown = [c for c in table.columns if c not in ("eligible", "kept")]
    rows = [
        [_cell(r[c]) for c in shown] + ["yes" if r["eligible"] else "", "kept" if r["kept"] else ""]
        for r in table.to_dict("records")
    ]
    facts = facts_html(
        [
            ("probe attack", format_choice(search.get("probe", {}))),
            ("clean-accuracy tolerance", search.get("clean_tolerance")),
            ("eligible / kept", f"{search.get('eligible')} / {len(search.get('kept', []))}"),
        ]
    )
    return (
        "<h4>the screen (stage one)</h4>"
        + facts
        + table_html([*shown, "eligible", "stage two"], rows, [True] * len(shown))
    )


def _cell(v):
    if isinstance(v, float) and math.isnan(v):
        return "—"
    return v if v is not None else "—"
