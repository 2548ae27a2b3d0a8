"""Heatmaps: compute the data first (`heatmap_info`), draw it second (`render_heatmap`).

Any metric over any two axes (or one: a single row), one panel per combination of the facet
columns' values. A cell aggregates the rows of its (x, y, facets) value over the seeds and every
axis not shown:

- ``mean``: the mean of those rows (std and n over the same rows);
- ``worst`` / ``best``: the seed-mean of each hidden setting (e.g. each trigger size), then the
  worst / best of them — the max for metrics where lower is better for the defender (ASR, slope),
  the min for accuracies; std and n are the seed spread of that setting, ``where`` names it.

With ``clean_tolerance`` a cell whose configuration (the learner/defence values it shows) has a
clean accuracy more than the tolerance below the best configuration's is marked as excluded —
the eligibility `select_robust` uses (docs/science.md, Robust choice); with ``mark`` the cells of
one configuration (the recommended one) are marked as chosen. Colours follow `analysis.scales`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.scales import (
    CHOSEN_COLOUR,
    EXCLUDED_GREY,
    HIGHER_IS_BETTER,
    better_word,
    colour_scale,
    value_range,
)
from backdoor_sweep.errors import SweepError

__all__ = [
    "AGGREGATES",
    "HIGHER_IS_BETTER",
    "HeatmapInfo",
    "HeatmapPanel",
    "default_axes",
    "heatmap_info",
    "render_heatmap",
]

AGGREGATES = ("mean", "worst", "best")
#: the y label of a one-axis heatmap (a single row)
ONE_ROW = "all"


@dataclass
class HeatmapPanel:
    """One panel: ``z[i, j]`` is the aggregate at ``y_values[i]``, ``x_values[j]``."""

    facet_values: dict  # facet column -> value; empty without facets
    z: np.ndarray
    std: np.ndarray
    n: np.ndarray
    where: np.ndarray  # worst/best: the hidden setting picked per cell ("" for mean)
    excluded: np.ndarray | None = None  # True: outside the clean-accuracy tolerance
    chosen: np.ndarray | None = None  # True: a cell of the marked configuration

    @property
    def title(self) -> str:
        return ", ".join(f"{k} = {_short(v)}" for k, v in self.facet_values.items())


@dataclass
class HeatmapInfo:
    metric: str
    x: str
    y: str | None  # None: one axis, drawn as a single row
    facets: list[str]
    agg: str
    x_values: list
    y_values: list
    hidden: list[str] = field(default_factory=list)  # varying axes aggregated over
    panels: list[HeatmapPanel] = field(default_factory=list)
    clean_tolerance: float | None = None
    best_clean: float | None = None  # the best configuration's clean accuracy
    mark: dict | None = None

    @property
    def facet(self) -> str | None:
        return self.facets[0] if self.facets else None

    @property
    def aggregated_over(self) -> str:
        """In words: what each cell aggregates ("mean over seeds and trigger_size")."""
        if self.agg == "mean":
            return f"mean over {' and '.join(['seeds', *self.hidden])}"
        if not self.hidden:
            return f"mean over seeds (no hidden axis to take the {self.agg} of)"
        return f"{self.agg} over {', '.join(self.hidden)} (each the mean over seeds)"


def close_matches(name: str, columns) -> str:
    """A short hint naming at most three columns spelled like ``name`` (never the whole list)."""
    near = difflib.get_close_matches(str(name), [str(c) for c in columns], n=3, cutoff=0.5)
    return f" (did you mean {', '.join(near)}?)" if near else ""


def _check_column(df: pd.DataFrame, name: str, what: str) -> None:
    if name not in df.columns:
        raise SweepError(
            f"{what} must be a column of the store; got {name!r}{close_matches(name, df.columns)}"
        )


def default_axes(df: pd.DataFrame) -> tuple[str, str | None, list[str]]:
    """(x, y, facets) from the sweep's grid: learner/defence axes first, attack axes as panels.

    Two or more learner/defence axes: the first two on x and y, a panel per attack setting (the
    first two attack axes, else the next learner axes). One: it on x, the first attack axis on y,
    the next two as panels. None: the attack axes. A grid of one axis gives a single row (y None).
    """
    from analysis.select import attack_axes, choice_axes

    choice, attack = choice_axes(df), attack_axes(df)
    if len(choice) >= 2:
        return choice[0], choice[1], (attack + choice[2:])[:2]
    ordered = choice + attack
    if not ordered:
        raise SweepError(
            "a heatmap needs at least one grid axis with several values; this sweep varies none"
        )
    return ordered[0], (ordered[1] if len(ordered) > 1 else None), ordered[2:4]


def heatmap_info(
    df: pd.DataFrame,
    x: str,
    y: str | None,
    metric: str,
    facet: str | list[str] | tuple[str, ...] | None = None,
    agg: str = "mean",
    *,
    clean_tolerance: float | None = None,
    mark: dict | None = None,
) -> HeatmapInfo:
    """Aggregate ``metric`` on the (y, x) grid, one panel per combination of ``facet`` values."""
    facets = [facet] if isinstance(facet, str) else list(facet or [])
    for name, what in (
        (x, "--x"),
        *(((y, "--y"),) if y is not None else ()),
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
    ycol = y if y is not None else "__row__"
    if y is None:
        ok = ok.assign(__row__=ONE_ROW)
    shown = [*facets, ycol, x]
    hidden = [c for c in _axes(ok) if c not in shown]
    info = HeatmapInfo(metric, x, y, facets, agg, _sorted(ok[x]), _sorted(ok[ycol]), hidden)
    if agg == "mean":
        g = ok.groupby(shown, dropna=False)[metric]
        cells = pd.DataFrame({"z": g.mean(), "std": g.std(), "n": g.count()}).reset_index()
        cells["where"] = ""
    else:
        pick_min = (metric in HIGHER_IS_BETTER) == (agg == "worst")
        g = ok.groupby(shown + hidden, dropna=False)[metric]
        per = pd.DataFrame({"z": g.mean(), "std": g.std(), "n": g.count()}).reset_index()
        order = per.sort_values("z", ascending=pick_min, kind="mergesort")
        cells = order.groupby(shown, dropna=False, sort=False).head(1).copy()
        cells["where"] = [
            ", ".join(f"{h}={_short(r[h])}" for h in hidden) for r in cells.to_dict("records")
        ]
    excluded_of = _excluded(df, info, clean_tolerance) if clean_tolerance is not None else None
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
        ex, ch = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        for r in part.to_dict("records"):
            if r[ycol] not in yi or r[x] not in xi:
                continue
            i, j = yi[r[ycol]], xi[r[x]]
            zs[i, j], ss[i, j], ns[i, j], ws[i, j] = r["z"], r["std"], int(r["n"]), r["where"]
            if excluded_of is not None:
                ex[i, j] = excluded_of(r)
            ch[i, j] = _is_marked(r, mark, shown)
        info.panels.append(
            HeatmapPanel(
                dict(zip(facets, combo, strict=True)),
                zs,
                ss,
                ns,
                ws,
                ex if excluded_of is not None else None,
                ch if mark else None,
            )
        )
    info.mark = dict(mark) if mark else None
    return info


def _excluded(df: pd.DataFrame, info: HeatmapInfo, tol: float):
    """A test of one cell: is its configuration outside the clean-accuracy tolerance?

    The configuration is the cell's values of the learner/defence axes shown; its clean accuracy is
    aggregated as `select_robust` does (`configuration_metric`), over every hidden axis, and the
    best is the best over every value of all learner/defence axes — `select_robust`'s eligibility.
    """
    from analysis.select import choice_axes, configuration_metric

    if not 0 <= tol <= 1:
        raise SweepError(f"clean_tolerance must be in [0, 1]; got {tol!r}")
    if "clean_acc" not in df.columns:
        return None
    choice = choice_axes(df)
    shown = [a for a in (info.x, info.y, *info.facets) if a in choice]
    if not shown:
        return None
    best = configuration_metric(df, choice, "clean_acc")["mean"].max()
    table = configuration_metric(df, shown, "clean_acc")
    low = {
        tuple(r[a] for a in shown)
        for r in table.to_dict("records")
        if r["mean"] < best - tol - 1e-12
    }
    info.clean_tolerance, info.best_clean = float(tol), float(best)
    return lambda r: tuple(r[a] for a in shown) in low


def _is_marked(r: dict, mark: dict | None, shown: list[str]) -> bool:
    if not mark:
        return False
    keys = [k for k in mark if k in shown]
    return bool(keys) and all(_same(r[k], mark[k]) for k in keys)


def _same(a, b) -> bool:
    try:
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))
    except (TypeError, ValueError):
        return str(a) == str(b)


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
    xs = [_short(v) for v in info.x_values]
    ys = [_short(v) for v in info.y_values]
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
