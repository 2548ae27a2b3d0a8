"""Privacy, robustness and accuracy side by side, for sweeps with DP-SGD (docs/science.md §8).

One point per configuration of the learner/defence axes (e.g. each noise multiplier): its ε at
the sweep's δ from the privacy accountant, its clean accuracy, its mean and worst-case ASR over the
attacks swept, each with the seed spread, aggregated as `select_robust` does, and whether it is
within the clean-accuracy tolerance. A configuration without noise has no finite ε (shown as ∞).
The figure orders the configurations from the least private (largest ε) to the most private, so
a reader sees what each step of privacy buys against the backdoor and costs in accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.scales import CHOSEN_COLOUR
from analysis.select import (
    accurate_configurations,
    choice_axes,
    configuration_metric,
    format_choice,
)
from backdoor_sweep.errors import SweepError

SERIES = (
    ("clean_acc", "clean accuracy", "#1b7837"),
    ("asr", "mean ASR", "#b2182b"),
    ("worst_asr", "worst-case ASR", "#67001f"),
)


def epsilon_text(eps: dict) -> str:
    """ε at δ in words; no noise means no finite ε."""
    if eps.get("mean") is None:
        return f"no DP guarantee (ε = ∞ at δ = {eps['delta']:g})"
    return f"ε = {eps['mean']:.2f} at δ = {eps['delta']:g}"


def dp_delta(df: pd.DataFrame) -> float:
    """δ of the sweep's DP-SGD: the stored value, else the defence's default."""
    if "dp_delta" in df.columns and df["dp_delta"].notna().any():
        return float(df["dp_delta"].dropna().iloc[0])
    from trainables.defences import DPSGDParams

    return float(DPSGDParams.model_fields["dp_delta"].default)


def has_epsilon(df: pd.DataFrame) -> bool:
    """Did the sweep record a finite ε anywhere?"""
    return (
        "dp_epsilon" in df.columns
        and pd.to_numeric(df["dp_epsilon"], errors="coerce").notna().any()
    )


def epsilon_at(df: pd.DataFrame, axes: list[str], choice: dict) -> dict | None:
    """ε of configuration ``choice`` (mean, std, n over seeds) with δ; None without DP-SGD."""
    if not is_private(df):
        return None
    delta = dp_delta(df)
    try:
        table = configuration_metric(df, axes, "dp_epsilon")
    except SweepError:  # DP-SGD at σ = 0 only: no finite ε anywhere
        return {"mean": None, "std": None, "n": 0, "delta": delta}
    row = table
    for a in axes:
        row = row[row[a] == choice[a]]
    if row.empty or pd.isna(row.iloc[0]["mean"]):
        return {"mean": None, "std": None, "n": 0, "delta": delta}
    r = row.iloc[0]
    return {
        "mean": float(r["mean"]),
        "std": None if pd.isna(r["std"]) else float(r["std"]),
        "n": int(r["n"]),
        "delta": delta,
    }


@dataclass
class PrivacyInfo:
    axes: list[str]
    delta: float
    clean_tolerance: float
    table: pd.DataFrame  # label, epsilon, <metric>, <metric>_std per SERIES, eligible


def is_private(df: pd.DataFrame) -> bool:
    """Does the sweep use DP-SGD (a recorded ε or the dp_sgd defence)?"""
    return has_epsilon(df) or ("defence" in df.columns and (df["defence"] == "dp_sgd").any())


def privacy_info(df: pd.DataFrame, clean_tolerance: float = 0.01) -> PrivacyInfo:
    """ε, clean accuracy and ASR per configuration of the choice axes, least private first."""
    if not is_private(df):
        raise SweepError("this sweep did not use DP-SGD (no dp_epsilon recorded)")
    axes = choice_axes(df)
    if not axes:
        raise SweepError(
            "a privacy view needs a varying learner/defence parameter (e.g. dp_noise); "
            "this sweep has none"
        )
    table = accurate_configurations(df, clean_tolerance, axes)[[*axes, "eligible"]]
    eps = (
        configuration_metric(df, axes, "dp_epsilon")[[*axes, "mean"]].rename(
            columns={"mean": "epsilon"}
        )
        if has_epsilon(df)
        else table[axes].assign(epsilon=np.nan)
    )
    table = table.merge(eps, on=axes, how="left")
    for metric, _, _ in SERIES:
        try:
            m = configuration_metric(df, axes, metric)[[*axes, "mean", "std"]]
        except SweepError:
            continue
        table = table.merge(
            m.rename(columns={"mean": metric, "std": f"{metric}_std"}), on=axes, how="left"
        )
    table["label"] = [format_choice({a: r[a] for a in axes}) for r in table.to_dict("records")]
    order = table["epsilon"].fillna(math.inf)
    table = table.assign(_o=-order).sort_values("_o", kind="mergesort").drop(columns="_o")
    return PrivacyInfo(axes, dp_delta(df), clean_tolerance, table.reset_index(drop=True))


def epsilon_label(eps: float) -> str:
    return "∞" if eps is None or not np.isfinite(eps) else f"{eps:.2f}"


def render_privacy(info: PrivacyInfo, highlight: dict | None = None, title: str | None = None):
    """Clean accuracy, mean and worst-case ASR per configuration (x: ε, least private first)."""
    import plotly.graph_objects as go

    t = info.table
    x = [f"{r['label']}<br>ε = {epsilon_label(r['epsilon'])}" for r in t.to_dict("records")]
    fig = go.Figure()
    for metric, name, colour in SERIES:
        if metric not in t:
            continue
        fig.add_trace(
            go.Scatter(
                x=x,
                y=t[metric],
                name=name,
                mode="lines+markers",
                line={"color": colour},
                marker={
                    "size": 9,
                    "symbol": ["circle" if e else "circle-open" for e in t["eligible"]],
                },
                error_y={"type": "data", "array": t[f"{metric}_std"].fillna(0), "visible": True},
                hovertemplate=f"%{{x}}<br>{name} %{{y:.3f}}<extra></extra>",
            )
        )
    if highlight:
        mask = np.ones(len(t), dtype=bool)
        for k, v in highlight.items():
            if k in t:
                mask &= (t[k] == v).to_numpy()
        for i in np.flatnonzero(mask):
            fig.add_vline(x=i, line={"color": CHOSEN_COLOUR, "width": 2, "dash": "dot"})
    fig.update_layout(
        title=title
        or f"privacy, robustness and accuracy (ε at δ = {info.delta:g})<br><sup>means over "
        "seeds and the attacks swept, bars ± std over seeds; open markers: outside the "
        f"clean-accuracy tolerance ({info.clean_tolerance:g}); dotted: the recommended</sup>",
        xaxis={"title": "configuration, least private first", "type": "category"},
        yaxis={"title": "rate", "range": [0, 1.05]},
        height=430,
        margin={"l": 60, "r": 20, "t": 90, "b": 90},
        legend={"orientation": "h", "y": -0.3},
        plot_bgcolor="white",
    )
    return fig
