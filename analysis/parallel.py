"""Parallel coordinates: every grid cell as one line through its axes and its metrics.

One line per cell of the grid (the seeds averaged): a vertical axis per grid axis — learner and
defence axes first, then the attack axes, each drawn with its values evenly spaced in sorted order
(log-spaced grids such as C read naturally) — then whether the cell's configuration is within the
clean-accuracy tolerance (`select_robust`'s eligibility, docs/science.md §9), then the
metrics. Lines are coloured by one metric with `analysis.scales`' meaning (yellow is good for the
defender). Dragging along an axis in the page selects a range, so a reader can ask "which accurate
configurations keep ASR below 0.2 at poison rate 0.1?" by brushing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.scales import colour_scale, value_range
from analysis.select import accurate_configurations, attack_axes, choice_axes
from backdoor_sweep.errors import SweepError

DEFAULT_METRICS = ("clean_acc", "asr")
TOLERANCE_AXIS = "accurate"


@dataclass
class Dimension:
    """One vertical axis: its values per line and, for grid axes, the label of each tick."""

    label: str
    values: np.ndarray
    tick_values: list = field(default_factory=list)
    tick_text: list[str] = field(default_factory=list)
    range: tuple[float, float] | None = None


@dataclass
class ParallelInfo:
    colour: str
    dimensions: list[Dimension]
    cells: pd.DataFrame  # one row per grid cell: the axes and the seed-mean metrics
    clean_tolerance: float | None = None


def _codes(col: pd.Series) -> tuple[np.ndarray, list, list[str]]:
    """Sorted values as 0..k-1 (numbers by value, the rest by text) and their labels."""
    vals = list(dict.fromkeys(col.tolist()))
    numeric = all(isinstance(v, (int, float, np.number)) for v in vals)
    vals.sort(key=(lambda v: float(v)) if numeric else str)
    index = {v: i for i, v in enumerate(vals)}
    labels = [f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in vals]
    return np.array([index[v] for v in col.tolist()], dtype=float), list(range(len(vals))), labels


def parallel_info(
    df: pd.DataFrame,
    metrics: list[str] | tuple[str, ...] | None = None,
    colour: str = "asr",
    clean_tolerance: float | None = 0.01,
) -> ParallelInfo:
    """Seed-mean metrics per grid cell and the axes to draw them on."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    if ok.empty:
        raise SweepError("no successful results to draw")
    metrics = list(metrics) if metrics else [m for m in DEFAULT_METRICS if m in ok.columns]
    if colour not in metrics:
        metrics.append(colour)
    for m in metrics:
        if m not in ok.columns:
            raise SweepError(f"--metric must be a metric this sweep recorded; got {m!r}")
    choice, attack = choice_axes(ok), attack_axes(ok)
    axes = choice + attack
    if not axes:
        raise SweepError(
            "parallel coordinates need a grid axis with several values; this sweep has none"
        )
    numeric = ok.assign(**{m: pd.to_numeric(ok[m], errors="coerce") for m in metrics})
    cells = numeric.groupby(axes, dropna=False)[metrics].mean().reset_index()
    dims = []
    for a in axes:
        codes, ticks, labels = _codes(cells[a])
        dims.append(Dimension(a, codes, ticks, labels, (-0.2, len(ticks) - 0.8)))
    if clean_tolerance is not None and choice and "clean_acc" in ok.columns:
        table = accurate_configurations(ok, clean_tolerance, choice)
        cells = cells.merge(table[[*choice, "eligible"]], on=choice, how="left")
        within = cells["eligible"].fillna(False).astype(bool).to_numpy()
        dims.append(
            Dimension(
                f"{TOLERANCE_AXIS} (±{clean_tolerance:g})",
                within.astype(float),
                [0, 1],
                ["outside", "within"],
                (-0.2, 1.2),
            )
        )
    for m in metrics:
        dims.append(Dimension(m, cells[m].to_numpy(dtype=float), range=value_range(m)))
    return ParallelInfo(colour, dims, cells, clean_tolerance)


def render_parallel(info: ParallelInfo, title: str | None = None):
    """A plotly parallel-coordinates figure, lines coloured by ``info.colour``."""
    import plotly.graph_objects as go

    scale, reverse = colour_scale(info.colour)
    colour = next(d for d in info.dimensions if d.label == info.colour)
    crange = value_range(info.colour)
    dims = []
    for d in info.dimensions:
        spec = {"label": d.label, "values": d.values}
        if d.tick_values:
            spec |= {"tickvals": d.tick_values, "ticktext": d.tick_text}
        if d.range is not None:
            spec["range"] = list(d.range)
        dims.append(spec)
    line = {
        "color": colour.values,
        "colorscale": scale,
        "reversescale": reverse,
        "showscale": True,
        "colorbar": {"title": {"text": info.colour}},
    }
    if crange is not None:
        line |= {"cmin": crange[0], "cmax": crange[1]}
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(
        title=title
        or f"every grid cell, coloured by {info.colour}<br><sup>seed means; drag along an axis "
        "to select a range</sup>",
        height=460,
        margin={"l": 70, "r": 40, "t": 110, "b": 30},
    )
    return fig
