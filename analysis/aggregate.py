"""Aggregation over seeds: mean, standard deviation, n and a 95% interval per configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: metric columns a trial row may carry (others are configuration values)
METRICS = {
    "clean_acc",
    "backdoor_acc",
    "asr",
    "asr_excl_pred",
    "robust_acc",
    "n_poison",
    "n_train",
    "n_test",
    "fit_seconds",
    "effective_poison_rate",
    "slope",
    "slope_fd",
    "slope_note",
    "rho_final",
    "nu_final",
    "dp_epsilon",
    "asr_before_finetune",
    "clean_acc_before_finetune",
    "filter_recall",
    "influential_poison_frac",
    "influence_note",
    # defences (trainables/defences.py)
    "epochs_before_finetune",
    "n_poison_set",
    "n_clean_set",
    "finetune_val_acc",
    "filter_precision",
    "filter_n_flagged",
    "n_trusted",
}


def aggregate(df: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """One row per group of ``by``: mean, std, n and the 95% t-interval of ``metric``."""
    from scipy.special import stdtrit  # Student's t quantile; scipy.stats takes seconds to import

    ok = df[df["status"] == "ok"] if "status" in df else df
    g = ok.groupby(by, dropna=False)[metric]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    half = np.where(
        out["n"] > 1,
        stdtrit(np.maximum(out["n"] - 1, 1), 0.975) * out["std"] / np.sqrt(out["n"].clip(lower=1)),
        np.nan,
    )
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    return out
