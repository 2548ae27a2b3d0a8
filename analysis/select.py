"""Choosing robust hyperparameters (SCIENCE.md §9).

The defender chooses the learner's configuration; the attacker chooses the attack. So a candidate
is one value of the *choice axes* (by default every varying configuration column that is not an
attack parameter — e.g. (C, γ)), and its metrics are aggregated over seeds and over the attack
settings swept in which poison was actually present (``n_poison > 0``):

- ``clean_acc``: mean over every attack setting and seed (with and without poison);
- ``asr`` / ``slope``: the mean over the attacked settings;
- ``worst_asr``: the largest seed-mean ASR over the attacked settings.

A configuration is eligible when its clean accuracy is within ``clean_tolerance`` of the best
candidate's; the choice is the eligible one with the lowest objective (ties: higher clean accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.aggregate import aggregate
from analysis.load import config_columns
from sweep.errors import SweepError

OBJECTIVES = ("asr", "slope", "worst_asr")


def attack_columns() -> set[str]:
    from sweep.spec import COMPONENT_KINDS

    cols = {"trigger", "poisoning", "target"}
    for kind in ("trigger", "poisoning"):
        for cls in COMPONENT_KINDS[kind].values():
            cols |= set(cls.Params.model_fields)
    return cols


def choice_axes(df: pd.DataFrame) -> list[str]:
    attack = attack_columns()
    return [c for c in config_columns(df) if c not in attack and df[c].nunique(dropna=False) > 1]


def attack_axes(df: pd.DataFrame) -> list[str]:
    attack = attack_columns()
    return [c for c in config_columns(df) if c in attack and df[c].nunique(dropna=False) > 1]


@dataclass
class Selection:
    objective: str
    clean_tolerance: float
    axes: list[str]
    choice: dict
    metrics: dict  # name -> {"mean", "std", "n"}
    reason: str
    table: pd.DataFrame = field(repr=False)

    def as_dict(self) -> dict:
        return {
            "objective": self.objective,
            "clean_tolerance": self.clean_tolerance,
            "axes": self.axes,
            "choice": self.choice,
            "metrics": self.metrics,
            "reason": self.reason,
        }


def candidate_table(df: pd.DataFrame, axes: list[str], objective: str) -> pd.DataFrame:
    """One row per configuration of ``axes`` with clean accuracy and the objective."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    if ok.empty:
        raise SweepError("no successful results to select from")
    key = axes or ["__all__"]
    if not axes:
        ok = ok.assign(__all__="all")
    clean = aggregate(ok, key, "clean_acc").rename(
        columns={"mean": "clean_acc", "std": "clean_acc_std", "n": "clean_acc_n"}
    )[key + ["clean_acc", "clean_acc_std", "clean_acc_n"]]
    attacked = ok[ok["n_poison"] > 0] if "n_poison" in ok else ok
    if attacked.empty:
        attacked = ok
    metric = "asr" if objective == "worst_asr" else objective
    if metric not in attacked.columns or pd.to_numeric(attacked[metric], errors="coerce").isna().all():
        raise SweepError(f"--objective {objective!r} needs the column {metric!r}, which this sweep did not record")
    attacked = attacked.assign(**{metric: pd.to_numeric(attacked[metric], errors="coerce")})
    if objective == "worst_asr":
        settings = [c for c in attack_axes(ok) if c in attacked.columns]
        per_setting = attacked.groupby(key + settings, dropna=False)[metric].agg(["mean", "std", "count"]).reset_index()
        idx = per_setting.groupby(key, dropna=False)["mean"].idxmax()
        worst = per_setting.loc[idx, key + ["mean", "std", "count"]]
        obj = worst.rename(columns={"mean": "objective", "std": "objective_std", "count": "objective_n"})
    else:
        obj = aggregate(attacked, key, metric).rename(
            columns={"mean": "objective", "std": "objective_std", "n": "objective_n"}
        )[key + ["objective", "objective_std", "objective_n"]]
    table = clean.merge(obj, on=key, how="left")
    if not axes:
        table = table.drop(columns="__all__")
    return table


def select_robust(df: pd.DataFrame, *, clean_tolerance: float = 0.01, objective: str = "asr",
                  axes: list[str] | None = None) -> Selection:
    """The eligible configuration with the lowest objective; see the module docstring."""
    if objective not in OBJECTIVES:
        raise SweepError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if not (0 <= clean_tolerance <= 1):
        raise SweepError(f"clean_tolerance must be in [0, 1]; got {clean_tolerance!r}")
    axes = choice_axes(df) if axes is None else list(axes)
    for a in axes:
        if a not in df.columns:
            raise SweepError(f"axes must be columns of the store; got {a!r}")
    table = candidate_table(df, axes, objective)
    best_clean = table["clean_acc"].max()
    eligible = table[(table["clean_acc"] >= best_clean - clean_tolerance - 1e-12) & table["objective"].notna()]
    if eligible.empty:
        raise SweepError(f"no configuration has a finite {objective} within the clean-accuracy tolerance")
    pick = eligible.sort_values(["objective", "clean_acc"], ascending=[True, False]).iloc[0]
    choice = {a: _plain(pick[a]) for a in axes}
    metrics = {
        "clean_acc": {"mean": float(pick["clean_acc"]), "std": _f(pick["clean_acc_std"]), "n": int(pick["clean_acc_n"])},
        objective: {"mean": float(pick["objective"]), "std": _f(pick["objective_std"]), "n": int(pick["objective_n"])},
    }
    what = {"asr": "mean attack success rate", "slope": "mean backdoor learning slope",
            "worst_asr": "worst-case attack success rate over the attacks swept"}[objective]
    reason = (
        f"{len(eligible)} of {len(table)} configurations have clean accuracy within {clean_tolerance:g} "
        f"of the best ({best_clean:.3f}); among them {_fmt(choice)} has the lowest {what} "
        f"({pick['objective']:.3f} ± {_f(pick['objective_std']) or 0:.3f}, n={int(pick['objective_n'])}) "
        f"at clean accuracy {pick['clean_acc']:.3f}."
    )
    return Selection(objective, clean_tolerance, axes, choice, metrics, reason, table)


def _f(v) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _fmt(choice: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in choice.items()) or "the only configuration"
