"""Aggregation over seeds: mean, standard deviation, n and a 95% interval per configuration.

The interval is Student's t-interval of the mean over the seeds (``docs/science.md``, Robust
choice). For a rate or an accuracy (`sweep.schema.is_rate`) a mean lies in [0, 1], so the interval
is cut to [0, 1] where the t-interval leaves it, and ``ci_clipped`` says so: with few seeds and a
large spread (0.5, 1, 1) the t-interval reaches 1.55, which no rate can be.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sweep.schema import is_rate


def aggregate(df: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """One row per group of ``by``: mean, std, n, the 95% interval of ``metric`` and whether it was
    clipped to [0, 1] (rates and accuracies only)."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    g = ok.groupby(by, dropna=False)[metric]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    half = np.where(
        out["n"] > 1,
        _t_quantile(0.975, np.maximum(out["n"] - 1, 1))
        * out["std"]
        / np.sqrt(out["n"].clip(lower=1)),
        np.nan,
    )
    low, high = out["mean"] - half, out["mean"] + half
    if is_rate(metric):
        clipped = (low < 0) | (high > 1)
        low, high = low.clip(lower=0.0), high.clip(upper=1.0)
    else:
        clipped = pd.Series(False, index=out.index)
    out["ci_low"], out["ci_high"], out["ci_clipped"] = low, high, clipped.astype(bool)
    return out


def _t_quantile(q: float, dof):
    """Student's t quantile; SciPy is imported here, not with the module (commands start fast),
    and from ``scipy.special`` (the same numbers as ``scipy.stats.t.ppf``; ``scipy.stats`` takes
    three times as long to import)."""
    from scipy.special import stdtrit

    return stdtrit(dof, q)
