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
the eligibility `select_robust` uses (docs/science.md §9); with ``mark`` the cells of
one configuration (the recommended one) are marked as chosen. Drawing is `analysis.heatmap_figure` (``render_heatmap`` is importable from here too).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.scales import HIGHER_IS_BETTER
from backdoor_sweep.errors import SweepError

__all__ = [
    "AGGREGATES",
    "HIGHER_IS_BETTER",
    "HeatmapInfo",
    "HeatmapPanel",
    "default_axes",
    "heatmap_info",
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
        return ", ".join(f"{k} = {short_text(v)}" for k, v in self.facet_values.items())


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
            ", ".join(f"{h}={short_text(r[h])}" for h in hidden) for r in cells.to_dict("records")
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


def short_text(v) -> str:
    """A value as a label: floats with %g."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def __getattr__(name: str):
    """``render_heatmap`` and ``default_title`` live in `analysis.heatmap_figure` (drawing)."""
    if name in ("render_heatmap", "default_title"):
        from analysis import heatmap_figure

        return getattr(heatmap_figure, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
