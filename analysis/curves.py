"""Backdoor learning curves as in the papers: compute the data (`curves_info`), then draw it
(`render_curves`).

One panel per learner configuration (by default the defender's varying parameters, e.g. (C, γ)),
one colour per poison rate; in each, the mean loss on TS (dashed) and on TS+BT (solid) against β,
averaged over the seeds and every other axis (e.g. trigger size). A falling solid line means the
poison is being learnt; the faster it falls near β = 0, the larger the slope θ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from backdoor_sweep.errors import SweepError


@dataclass
class CurveLine:
    colour_value: object
    beta: np.ndarray
    loss_clean: np.ndarray
    loss_backdoor: np.ndarray
    n: np.ndarray  # results averaged per β


@dataclass
class CurvePanel:
    config: dict
    lines: list[CurveLine] = field(default_factory=list)

    @property
    def title(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items()) or "all results"


@dataclass
class CurvesInfo:
    panel_by: list[str]
    colour_by: str
    colour_values: list
    panels: list[CurvePanel] = field(default_factory=list)


def curves_info(
    trials: pd.DataFrame,
    curves: pd.DataFrame,
    panel_by: list[str] | None = None,
    colour_by: str = "poison_rate",
) -> CurvesInfo:
    """Mean curves per (panel configuration, colour value, β) from the trials and curves tables.

    ``trials`` may be pre-filtered (e.g. ``--where``): only its results are drawn. ``panel_by``
    defaults to `analysis.select.choice_axes` (the learner/defence parameters that vary).
    """
    if curves.empty:
        raise SweepError(
            "the sweep has no learning curves; run it with `curves: {enabled: true}` in its spec"
        )
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials
    if ok.empty:
        raise SweepError("no successful results are selected (check --where)")
    if panel_by is None:
        from analysis.select import choice_axes

        panel_by = choice_axes(ok)
    for col in [*panel_by, colour_by]:
        if col not in ok.columns:
            cols = ", ".join(sorted(map(str, ok.columns)))
            raise SweepError(
                f"curve panels/colours must be columns of the trials table ({cols}); got {col!r}"
            )
    keys = ok[["result_id", *dict.fromkeys([*panel_by, colour_by])]]
    joined = curves.merge(keys, on="result_id", how="inner")
    if joined.empty:
        raise SweepError("no learning-curve rows match the selected results")
    colour_values = sorted(joined[colour_by].dropna().unique().tolist())
    info = CurvesInfo(list(panel_by), colour_by, colour_values)
    groups = joined.groupby(panel_by, sort=True, dropna=False) if panel_by else [((), joined)]
    for values, part in groups:
        values = values if isinstance(values, tuple) else (values,)
        panel = CurvePanel({k: _plain(v) for k, v in zip(panel_by, values, strict=True)})
        for cv in colour_values:
            sub = part[part[colour_by] == cv]
            if sub.empty:
                continue
            g = sub.groupby("beta", sort=True)
            mean = g[["loss_clean", "loss_backdoor"]].mean()
            panel.lines.append(
                CurveLine(
                    _plain(cv),
                    mean.index.to_numpy(dtype=float),
                    mean["loss_clean"].to_numpy(),
                    mean["loss_backdoor"].to_numpy(),
                    g.size().to_numpy(),
                )
            )
        info.panels.append(panel)
    return info


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _x_positions(beta: np.ndarray, zero_at: float) -> np.ndarray:
    """β on a log axis, with β = 0 drawn at ``zero_at`` (labelled 0)."""
    return np.where(beta > 0, beta, zero_at)


def render_curves(info: CurvesInfo, title: str | None = None, max_cols: int = 4):
    """A plotly figure: a panel per configuration; TS loss dashed, TS+BT loss solid, colour = rate."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    n = len(info.panels)
    cols = min(max_cols, max(n, 1))
    rows = int(np.ceil(n / cols)) if n else 1
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[p.title for p in info.panels],
        horizontal_spacing=0.05,
        vertical_spacing=min(0.12, 0.3 / rows),
    )
    positive = [b for p in info.panels for ln in p.lines for b in ln.beta if b > 0]
    zero_at = (min(positive) / 3.0) if positive else 1e-3
    ticks = [zero_at, *[10.0**k for k in range(int(np.floor(np.log10(zero_at * 3) + 1e-9)), 1)]]
    palette = qualitative.Plotly
    colour = {cv: palette[i % len(palette)] for i, cv in enumerate(info.colour_values)}
    for k, panel in enumerate(info.panels):
        r, c = k // cols + 1, k % cols + 1
        for ln in panel.lines:
            x = _x_positions(ln.beta, zero_at)
            name = f"{info.colour_by}={ln.colour_value}"
            for y, dash, what in (
                (ln.loss_clean, "dash", "TS"),
                (ln.loss_backdoor, "solid", "TS+BT"),
            ):
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=y,
                        mode="lines+markers",
                        marker={"size": 4},
                        line={"color": colour[ln.colour_value], "dash": dash},
                        name=name,
                        legendgroup=name,
                        showlegend=k == 0 and dash == "solid",
                        customdata=np.stack([ln.beta, ln.n], axis=1),
                        hovertemplate=f"{panel.title}<br>{name}<br>β=%{{customdata[0]:.4g}}<br>"
                        f"mean loss on {what}=%{{y:.4f}}<br>n=%{{customdata[1]}}<extra></extra>",
                    ),
                    row=r,
                    col=c,
                )
        fig.update_xaxes(
            type="log",
            tickvals=ticks,
            ticktext=["0", *[f"{t:g}" for t in ticks[1:]]],
            title_text="β" if r == rows else None,
            row=r,
            col=c,
        )
        fig.update_yaxes(title_text="mean loss" if c == 1 else None, row=r, col=c)
    for dash, what in (("dash", "loss on TS"), ("solid", "loss on TS+BT")):  # the line-style key
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                name=what,
                legendgroup="style",
                line={"color": "black", "dash": dash},
            ),
            row=1,
            col=1,
        )
    fig.update_layout(
        title=title or "Backdoor learning curves: loss on TS (dashed) and TS+BT (solid)",
        height=max(360, 260 * rows),
        width=max(560, 330 * cols),
        legend={"title": {"text": info.colour_by}},
    )
    return fig
