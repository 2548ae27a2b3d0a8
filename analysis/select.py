"""Choosing robust hyperparameters (docs/science.md §9).

The defender chooses the learner's configuration; the attacker chooses the attack. So a candidate
is one value of the *choice axes* (by default every varying learner or defence parameter — e.g.
(C, γ)), and its metrics are aggregated over the attack settings swept and over seeds. Seeds are
the replicates: each seed's value is first averaged over the attack settings, so the spread
(std, n, 95% t-interval) reported is the spread *between seeds*:

- ``clean_acc``: over every attack setting (with and without poison);
- ``asr`` / ``slope`` / any other metric: over the settings in which poison was actually present
  (``n_poison > 0``; every row if the sweep has no such column or no poisoned row);
- ``worst_asr`` (``worst_<metric>`` in general): the attack setting with the largest seed-mean,
  with the seed spread of that setting.

A configuration is eligible when its clean accuracy is within ``clean_tolerance`` of the best
candidate's; the choice is the eligible one with the lowest objective (ties: higher clean accuracy,
then the order of the axes' values).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.aggregate import aggregate
from backdoor_sweep.errors import SweepError
from sweep.schema import METRICS

OBJECTIVES = ("asr", "slope", "worst_asr")
_STATS = ["mean", "std", "n", "ci_low", "ci_high", "ci_clipped"]
_WHAT = {
    "asr": "mean attack success rate",
    "slope": "mean backdoor learning slope",
    "worst_asr": "worst-case attack success rate over the attacks swept",
}


def attack_columns() -> set[str]:
    """Columns the attacker controls: trigger and poisoning names and their parameters, the target."""
    from sweep.spec import COMPONENT_KINDS

    cols = {"trigger", "poisoning", "target"}
    for kind in ("trigger", "poisoning"):
        for cls in COMPONENT_KINDS[kind].values():
            cols |= set(cls.Params.model_fields)
    return cols


def defender_columns() -> set[str]:
    """Columns the defender controls: learner and defence names and their parameters."""
    from sweep.spec import COMPONENT_KINDS

    cols = {"learner", "defence"}
    for kind in ("learner", "defence"):
        for cls in COMPONENT_KINDS[kind].values():
            cols |= set(cls.Params.model_fields)
    return cols - attack_columns()


def _varying(df: pd.DataFrame, cols: set[str]) -> list[str]:
    return [c for c in df.columns if c in cols and df[c].nunique(dropna=False) > 1]


def choice_axes(df: pd.DataFrame) -> list[str]:
    """The varying learner/defence parameters, in column order."""
    return _varying(df, defender_columns())


def attack_axes(df: pd.DataFrame) -> list[str]:
    """The varying attack parameters (poison rate, trigger size…), in column order."""
    return _varying(df, attack_columns())


def grid_axes(df: pd.DataFrame) -> list[str]:
    """Every varying parameter, the defender's and the attacker's (not metrics or bookkeeping)."""
    return _varying(df, defender_columns() | attack_columns())


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    """Rows a choice reads: successful, and not a slope screen's stage one (one probe attack)."""
    from sweep.search import SCREEN_STAGE, STAGE_COLUMN

    ok = df[df["status"] == "ok"] if "status" in df else df
    return ok[ok[STAGE_COLUMN] != SCREEN_STAGE] if STAGE_COLUMN in ok else ok


def configuration_metric(df: pd.DataFrame, axes: list[str], name: str) -> pd.DataFrame:
    """One row per configuration of ``axes``: mean, std, n and 95% interval of ``name`` over seeds.

    ``name`` is a metric column or ``worst_<metric>``; see the module docstring for which attack
    settings each kind of metric is aggregated over.
    """
    ok = _ok(df)
    worst = name.startswith("worst_") and name not in ok.columns
    metric = name[len("worst_") :] if worst else name
    if metric not in ok.columns or pd.to_numeric(ok[metric], errors="coerce").isna().all():
        raise SweepError(
            f"metric {name!r} needs the column {metric!r} with values, which this sweep did not record"
        )
    rows = ok
    if not (metric in METRICS and METRICS[metric].clean) and "n_poison" in ok.columns:
        attacked = ok[pd.to_numeric(ok["n_poison"], errors="coerce") > 0]
        rows = attacked if not attacked.empty else ok
    rows = rows.assign(**{metric: pd.to_numeric(rows[metric], errors="coerce")})
    rows = rows[rows[metric].notna()]
    key = list(axes) or ["__all__"]
    if not axes:
        rows = rows.assign(__all__="all")
    if worst:
        settings = [c for c in attack_axes(ok) if c in rows.columns and c not in key]
        per_setting = aggregate(rows, key + settings, metric)
        idx = per_setting.groupby(key, dropna=False)["mean"].idxmax()
        out = per_setting.loc[idx, key + _STATS + settings].reset_index(drop=True)
        out = out.rename(columns={s: f"worst_at_{s}" for s in settings})
    else:
        # seeds are the replicates: average each seed over the attack settings first
        per_seed = (
            rows.groupby(key + ["seed"], dropna=False)[metric].mean().reset_index()
            if "seed" in rows
            else rows
        )
        out = aggregate(per_seed, key, metric)[key + _STATS]
    return out.drop(columns="__all__") if not axes else out


def candidate_table(df: pd.DataFrame, axes: list[str], objective: str) -> pd.DataFrame:
    """One row per configuration of ``axes``: clean accuracy and the objective, each with spread."""
    if _ok(df).empty:
        raise SweepError("no successful results to select from")
    clean = configuration_metric(df, axes, "clean_acc")
    clean = clean.rename(
        columns={s: f"clean_acc_{s}" if s != "mean" else "clean_acc" for s in _STATS}
    )
    obj = configuration_metric(df, axes, objective)
    obj = obj.rename(columns={s: f"objective_{s}" if s != "mean" else "objective" for s in _STATS})
    if not axes:
        return pd.concat([clean, obj], axis=1)
    return clean.merge(obj, on=list(axes), how="left")


def accurate_configurations(
    df: pd.DataFrame, clean_tolerance: float, axes: list[str] | None = None
) -> pd.DataFrame:
    """One row per configuration of ``axes`` (default: the choice axes): ``clean_acc`` and
    ``eligible``, True when it is within ``clean_tolerance`` of the best — `select_robust`'s test."""
    if not (0 <= clean_tolerance <= 1):
        raise SweepError(f"clean_tolerance must be in [0, 1]; got {clean_tolerance!r}")
    axes = choice_axes(df) if axes is None else list(axes)
    table = configuration_metric(df, axes, "clean_acc")[[*axes, "mean"]]
    table = table.rename(columns={"mean": "clean_acc"})
    table["eligible"] = table["clean_acc"] >= table["clean_acc"].max() - clean_tolerance - 1e-12
    return table


@dataclass
class Selection:
    """The robust choice, its metrics with seed spread, the reason, and every candidate."""

    objective: str
    clean_tolerance: float
    axes: list[str]
    choice: dict
    metrics: dict  # name -> {"mean", "std", "n", "ci_low", "ci_high", "ci_clipped"}
    reason: str
    runner_up: dict | None = None
    table: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)

    def as_dict(self, candidates: bool = True) -> dict:
        """Plain data (NaN becomes None), ready for `json.dumps`."""
        out = {
            "objective": self.objective,
            "clean_tolerance": self.clean_tolerance,
            "axes": self.axes,
            "choice": self.choice,
            "metrics": self.metrics,
            "reason": self.reason,
            "runner_up": self.runner_up,
        }
        if candidates:
            out["candidates"] = [
                {k: _plain(v) for k, v in r.items()} for r in self.table.to_dict("records")
            ]
        return _json_safe(out)

    def to_json(self, **extra) -> str:
        """Strict JSON (no NaN); ``extra`` keys are put first (e.g. the sweep name)."""
        return json.dumps({**_json_safe(extra), **self.as_dict()}, indent=2, allow_nan=False)


def select_robust(
    df: pd.DataFrame,
    *,
    clean_tolerance: float = 0.01,
    objective: str = "asr",
    axes: list[str] | None = None,
) -> Selection:
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
    table["eligible"] = (table["clean_acc"] >= best_clean - clean_tolerance - 1e-12) & table[
        "objective"
    ].notna()
    order = table.assign(_neg_clean=-table["clean_acc"]).sort_values(
        ["eligible", "objective", "_neg_clean", *axes],
        ascending=[False, True, True, *[True] * len(axes)],
        kind="mergesort",
        na_position="last",
    )
    table = order.drop(columns="_neg_clean").reset_index(drop=True)
    table["rank"] = np.where(table["eligible"], np.arange(1, len(table) + 1), 0)
    eligible = table[table["eligible"]]
    if eligible.empty:
        raise SweepError(
            f"no configuration has a finite {objective} within the clean-accuracy tolerance"
        )
    pick = eligible.iloc[0]
    choice = {a: _plain(pick[a]) for a in axes}
    metrics = {"clean_acc": _stats(pick, "clean_acc"), objective: _stats(pick, "objective")}
    runner = None
    if len(eligible) > 1:
        second = eligible.iloc[1]
        runner = {
            "choice": {a: _plain(second[a]) for a in axes},
            objective: _stats(second, "objective"),
            "clean_acc": _stats(second, "clean_acc"),
        }
    reason = _reason(
        objective, clean_tolerance, best_clean, len(eligible), len(table), choice, metrics, runner
    )
    return Selection(objective, clean_tolerance, axes, choice, metrics, reason, runner, table)


def _stats(row: pd.Series, prefix: str) -> dict:
    names = {
        "mean": prefix,
        "std": f"{prefix}_std",
        "n": f"{prefix}_n",
        "ci_low": f"{prefix}_ci_low",
        "ci_high": f"{prefix}_ci_high",
    }
    out = {k: _f(row[col]) for k, col in names.items()}
    out["n"] = int(row[names["n"]])
    out["ci_clipped"] = bool(row.get(f"{prefix}_ci_clipped", False))
    return out


def _spread(m: dict) -> str:
    if m["std"] is None:
        return f"{m['mean']:.3f} (n={m['n']} seed{'s' if m['n'] != 1 else ''}, no spread)"
    clipped = ", clipped to [0, 1]" if m.get("ci_clipped") else ""
    return f"{m['mean']:.3f} ± {m['std']:.3f} (std over {m['n']} seeds; 95% CI {m['ci_low']:.3f}–{m['ci_high']:.3f}{clipped})"


def _reason(objective, tol, best_clean, n_eligible, n_all, choice, metrics, runner) -> str:
    obj = metrics[objective]
    text = (
        f"{n_eligible} of {n_all} configurations have clean accuracy within {tol:g} of the best "
        f"({best_clean:.3f}); among them {format_choice(choice)} has the lowest {_WHAT[objective]}: "
        f"{_spread(obj)}, at clean accuracy {_spread(metrics['clean_acc'])}."
    )
    if runner is not None:
        r = runner[objective]
        text += f" Runner-up: {format_choice(runner['choice'])} with {r['mean']:.3f}"
        if obj["ci_high"] is not None and r["mean"] <= obj["ci_high"]:
            text += ", inside the choice's 95% interval: the seeds do not separate the two."
        else:
            text += "."
    return text


def _f(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _plain(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, (np.generic,)):
        return _json_safe(obj.item())
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def format_choice(choice: dict) -> str:
    return (
        ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in choice.items())
        or "the only configuration"
    )
