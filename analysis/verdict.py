"""One verdict per sweep: the configuration to use, why, and what no configuration achieves.

The three robust picks of `select_robust` (docs/science.md §9) answer different
questions: the lowest *mean* ASR over the attacks swept (every attack equally likely), the lowest
*worst-case* ASR (the attacker picks the strongest attack swept) and the lowest *slope* (the
backdoor is learned slowest as the first poisons arrive, β → 0). The verdict reconciles them:

- the pick by mean ASR is recommended when its worst case is within the seeds' 95% interval of the
  lowest worst case (guarding against the strongest attack costs nothing it can measure); otherwise
  the pick by worst case is, because its guarantee holds whichever attack of those swept comes;
- where the picks agree it says so; where they differ, the table says why and which to use when.

It also states, per value of the main attack axis (the poison rate where swept), the lowest mean ASR
any accurate configuration reaches, and says so plainly when none stays below `ASR_LIMIT`. With
DP-SGD, ε (at its δ) stands beside accuracy and ASR. "Accurate" is always the clean-accuracy
tolerance of `select_robust`; a chance-level model is not robust, it is useless.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from analysis.privacy import dp_delta, epsilon_at, epsilon_text, has_epsilon
from analysis.select import (
    Selection,
    attack_axes,
    configuration_metric,
    format_choice,
    select_robust,
)
from backdoor_sweep.errors import SweepError

#: an attack "succeeds" when it flips at least this share of triggered inputs (a majority)
ASR_LIMIT = 0.5
#: what each pick answers and when to use it
USE_WHEN = {
    "asr": "every attack swept is about as likely (the mean weighs them equally)",
    "worst_asr": "the attacker chooses the attack: the guarantee holds for every attack swept",
    "slope": "the poison budget is small or unknown: it measures how fast the first poisons teach "
    "the backdoor (β → 0), not the ASR at the rates swept",
}
PICK_NAMES = {
    "asr": "lowest mean ASR",
    "worst_asr": "lowest worst-case ASR",
    "slope": "lowest slope",
}


@dataclass
class Pick:
    """One robust pick and how it fares on every criterion (stats dicts: mean, std, n, ci)."""

    objective: str
    choice: dict
    values: dict  # "clean_acc", "asr", "worst_asr", "slope" -> stats (absent when not recorded)
    worst_at: dict = field(default_factory=dict)  # the attack setting of its worst case


@dataclass
class Verdict:
    """The recommendation with its evidence; see the module docstring."""

    recommended: Pick
    basis: str  # the objective whose pick is recommended
    why: str
    picks: dict[str, Pick]
    agreement: str
    limits: list[str]
    by_attack: list[dict]  # per value of the main attack axis: the best an accurate model does
    attack_axis: str | None
    clean_tolerance: float
    best_clean: float
    n_accurate: int
    n_configurations: int
    epsilon: dict | None = None  # {"mean", "std", "n", "delta"}; None without DP-SGD
    privacy: str | None = None  # DP-SGD: the most private accurate configuration, in words
    selections: dict[str, Selection] = field(default_factory=dict, repr=False)

    @property
    def headline(self) -> str:
        """The verdict in one line: the configuration and its numbers."""
        v = self.recommended.values
        text = (
            f"use {format_choice(self.recommended.choice)}: clean accuracy {_num(v['clean_acc'])}"
        )
        text += f", ASR {_num(v['asr'])}"
        if "worst_asr" in v:
            text += f", worst case {_num(v['worst_asr'])}"
        if self.epsilon is not None:
            text += f", {epsilon_text(self.epsilon)}"
        return text


def _num(m: dict) -> str:
    clipped = ", clipped to [0, 1]" if m.get("ci_clipped") else ""
    ci = (
        f" (95% CI {m['ci_low']:.3f}–{m['ci_high']:.3f}{clipped})"
        if m.get("ci_low") is not None
        else ""
    )
    return f"{m['mean']:.3f}{ci}"


def _row_stats(table: pd.DataFrame, axes: list[str], choice: dict, prefix: str) -> dict | None:
    row = table
    for a in axes:
        row = row[row[a] == choice[a]]
    if row.empty or pd.isna(row.iloc[0][prefix]):
        return None
    r = row.iloc[0]
    out = {
        "mean": float(r[prefix]),
        "std": _f(r[f"{prefix}_std"]),
        "n": int(r[f"{prefix}_n"]),
        "ci_low": _f(r[f"{prefix}_ci_low"]),
        "ci_high": _f(r[f"{prefix}_ci_high"]),
        "ci_clipped": bool(r.get(f"{prefix}_ci_clipped", False)),
    }
    return out


def _f(v) -> float | None:
    return None if pd.isna(v) else float(v)


def _pick(objective: str, sels: dict[str, Selection]) -> Pick:
    sel = sels[objective]
    values = {"clean_acc": sel.metrics["clean_acc"]}
    for name, other in sels.items():
        stats = _row_stats(other.table, other.axes, sel.choice, "objective")
        if stats is not None:
            values[name] = stats
    worst = sels.get("worst_asr")
    worst_at = {}
    if worst is not None:
        row = worst.table
        for a in worst.axes:
            row = row[row[a] == sel.choice[a]]
        worst_at = {
            c.removeprefix("worst_at_"): row.iloc[0][c]
            for c in row.columns
            if c.startswith("worst_at_") and not row.empty
        }
    return Pick(objective, sel.choice, values, worst_at)


def _separated(worse: dict, best: dict) -> bool:
    """Is ``worse`` larger than ``best`` beyond the seeds' 95% interval of ``best``?"""
    if best.get("ci_high") is not None:
        return worse["mean"] > best["ci_high"] + 1e-12
    return worse["mean"] > best["mean"] + 1e-12


def verdict_info(
    df: pd.DataFrame,
    clean_tolerance: float = 0.01,
    selections: dict[str, Selection | str] | None = None,
) -> Verdict:
    """The verdict of one sweep's results (every row of ``df``); see the module docstring.

    ``selections`` (objective -> `Selection`, or the error text of one that failed) reuses picks
    already made with the same tolerance.
    """
    sels: dict[str, Selection] = {}
    for objective in ("asr", "worst_asr", "slope"):
        done = (selections or {}).get(objective)
        if isinstance(done, Selection):
            sels[objective] = done
            continue
        if isinstance(done, str) and objective != "asr":
            continue
        try:
            sels[objective] = select_robust(
                df, clean_tolerance=clean_tolerance, objective=objective
            )
        except SweepError:
            if objective == "asr":
                raise
    picks = {o: _pick(o, sels) for o in sels}
    by_mean, basis = picks["asr"], "asr"
    by_worst = picks.get("worst_asr")
    if by_worst is None or by_worst.choice == by_mean.choice:
        why = (
            "it has the lowest mean ASR"
            + (" and the lowest worst-case ASR" if by_worst is not None else "")
            + " of the accurate configurations"
        )
    elif _separated(by_mean.values["worst_asr"], by_worst.values["worst_asr"]):
        basis = "worst_asr"
        why = (
            f"it has the lowest worst-case ASR ({by_worst.values['worst_asr']['mean']:.3f}): whichever "
            f"attack of those swept comes, its ASR stays there or below. The lowest mean ASR, "
            f"{format_choice(by_mean.choice)} ({by_mean.values['asr']['mean']:.3f}), has a worst "
            f"case of {by_mean.values['worst_asr']['mean']:.3f}, beyond the seeds' interval"
        )
    else:
        why = (
            f"it has the lowest mean ASR, and its worst case ({by_mean.values['worst_asr']['mean']:.3f}) "
            f"is within the seeds' 95% interval of the lowest worst case "
            f"({format_choice(by_worst.choice)}: {_num(by_worst.values['worst_asr'])}), so guarding "
            "against the strongest attack costs nothing measurable"
        )
    rec = picks[basis]
    sel = sels["asr"]
    axis, by_attack = _by_attack(df, sel)
    return Verdict(
        recommended=rec,
        basis=basis,
        why=why,
        picks=picks,
        agreement=_agreement(picks, basis),
        limits=_limits(axis, by_attack, rec),
        by_attack=by_attack,
        attack_axis=axis,
        clean_tolerance=clean_tolerance,
        best_clean=float(sel.table["clean_acc"].max()),
        n_accurate=int(sel.table["eligible"].sum()),
        n_configurations=len(sel.table),
        epsilon=epsilon_at(df, sel.axes, rec.choice),
        privacy=_most_private(df, sels, rec),
        selections=sels,
    )


def _agreement(picks: dict[str, Pick], basis: str) -> str:
    names = [PICK_NAMES[o] for o in picks]
    choices = {format_choice(p.choice) for p in picks.values()}
    if len(choices) == 1:
        if len(picks) == 1:
            return "Only the mean ASR could be compared (no attack axis, no slope)."
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        return f"The {len(picks)} criteria agree: {listed} all pick {choices.pop()}."
    differ = [
        f"{PICK_NAMES[o]} picks {format_choice(p.choice)}"
        for o, p in picks.items()
        if p.choice != picks[basis].choice
    ]
    return (
        f"The criteria differ: {'; '.join(differ)}. The table below shows each pick on every "
        "criterion and when to use it."
    )


def _by_attack(df: pd.DataFrame, sel: Selection) -> tuple[str | None, list[dict]]:
    """Per value of the main attack axis: the lowest mean ASR of an accurate configuration."""
    attack = attack_axes(df)
    axis = "poison_rate" if "poison_rate" in attack else (attack[0] if attack else None)
    eligible = sel.table[sel.table["eligible"]]
    ok = df[df["status"] == "ok"] if "status" in df else df
    values = [None] if axis is None else sorted(ok[axis].dropna().unique(), key=_order)
    out = []
    for v in values:
        part = ok if v is None else ok[ok[axis] == v]
        if "n_poison" in part and not (pd.to_numeric(part["n_poison"]) > 0).any():
            continue  # no poison at this value: nothing to resist
        try:
            cm = configuration_metric(part, sel.axes, "asr")
        except SweepError:
            continue
        if sel.axes:
            cm = cm.merge(eligible[sel.axes], on=sel.axes, how="inner")
        cm = cm[cm["mean"].notna()].sort_values("mean", kind="mergesort")
        if cm.empty:
            continue
        best = cm.iloc[0]
        out.append(
            {
                "value": v,
                "lowest_asr": float(best["mean"]),
                "ci_high": _f(best["ci_high"]),
                "choice": {a: best[a] for a in sel.axes},
                "n_below": int((cm["mean"] < ASR_LIMIT).sum()),
                "n_accurate": len(cm),
            }
        )
    return axis, out


def _order(v):
    return (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v))


def _at(axis: str | None, value) -> str:
    return f"{axis} {_plain(value)}" if axis else "the attack swept"


def _limits(axis: str | None, by_attack: list[dict], rec: Pick) -> list[str]:
    """Plain statements of what no accurate configuration achieves (or that every value has one)."""
    failing = [r for r in by_attack if r["n_below"] == 0]
    lines = []
    if failing and len(failing) > 1 and by_attack[by_attack.index(failing[0]) :] == failing:
        first = failing[0]
        lines.append(
            f"From {_at(axis, first['value'])} on, no accurate configuration keeps ASR below "
            f"{ASR_LIMIT:g} (the lowest at {_at(axis, first['value'])} is "
            f"{first['lowest_asr']:.3f}, {format_choice(first['choice'])})."
        )
    else:
        for r in failing:
            lines.append(
                f"No accurate configuration keeps ASR below {ASR_LIMIT:g} at "
                f"{_at(axis, r['value'])} (the lowest is {r['lowest_asr']:.3f}, "
                f"{format_choice(r['choice'])})."
            )
    if not failing and by_attack:
        hardest = max(by_attack, key=lambda r: r["lowest_asr"])
        lines.append(
            f"Some accurate configuration keeps ASR below {ASR_LIMIT:g} at every "
            f"{axis or 'attack'} value swept (hardest: {_at(axis, hardest['value'])}, lowest "
            f"{hardest['lowest_asr']:.3f})."
        )
    worst = rec.values.get("worst_asr")
    if worst is not None and worst["mean"] >= ASR_LIMIT:
        where = ", ".join(f"{k}={_plain(v)}" for k, v in rec.worst_at.items())
        lines.append(
            "Even the recommended configuration is backdoored by the strongest attack swept"
            f"{f' ({where})' if where else ''}: worst-case ASR {worst['mean']:.3f}."
        )
    return lines


def _plain(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _most_private(df: pd.DataFrame, sels: dict[str, Selection], rec: Pick) -> str | None:
    """DP-SGD: the accurate configuration with the smallest ε, and what it costs or buys."""
    sel = sels["asr"]
    if not has_epsilon(df) or not sel.axes:
        return None
    eps = configuration_metric(df, sel.axes, "dp_epsilon")[[*sel.axes, "mean"]]
    table = sel.table[sel.table["eligible"]].merge(eps, on=sel.axes, how="inner")
    table = table[table["mean"].notna()].sort_values("mean", kind="mergesort")
    if table.empty:
        return "No accurate configuration has a finite ε: none of them is differentially private."
    best = table.iloc[0]
    choice = {a: best[a] for a in sel.axes}
    text = f"ε = {best['mean']:.2f} at δ = {dp_delta(df):g}"
    if format_choice(choice) == format_choice(rec.choice):
        return f"The recommended configuration is also the most private accurate one ({text})."
    pick = _pick("asr", {**sels, "asr": _as_choice(sel, choice)})
    worst = pick.values.get("worst_asr")
    return (
        f"The most private accurate configuration, {format_choice(choice)} ({text}), has clean "
        f"accuracy {pick.values['clean_acc']['mean']:.3f} and ASR {pick.values['asr']['mean']:.3f}"
        + (f" (worst case {worst['mean']:.3f})" if worst else "")
        + f", against {rec.values['asr']['mean']:.3f} for the recommended one."
    )


def _as_choice(sel: Selection, choice: dict) -> Selection:
    """``sel`` as if it had picked ``choice`` (to read every criterion of that configuration)."""
    row = sel.table
    for a in sel.axes:
        row = row[row[a] == choice[a]]
    stats = _row_stats(row, sel.axes, choice, "clean_acc")
    return Selection(
        sel.objective,
        sel.clean_tolerance,
        sel.axes,
        choice,
        {"clean_acc": stats, sel.objective: _row_stats(row, sel.axes, choice, "objective")},
        sel.reason,
        None,
        sel.table,
    )


def most_vulnerable(sel: Selection) -> dict | None:
    """The accurate configuration with the highest objective (None if it is the choice itself)."""
    eligible = sel.table[sel.table["eligible"] & sel.table["objective"].notna()]
    if eligible.empty:
        return None
    worst = eligible.sort_values("objective", ascending=False, kind="mergesort").iloc[0]
    choice = {a: worst[a] for a in sel.axes}
    return None if format_choice(choice) == format_choice(sel.choice) else choice
