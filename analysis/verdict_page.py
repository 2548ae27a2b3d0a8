"""The verdict and the three robust picks as HTML (computed by `analysis.verdict`)."""

from __future__ import annotations

from analysis.page import Raw, esc, table_html
from analysis.select import Selection, format_choice
from analysis.verdict import PICK_NAMES, USE_WHEN, Verdict, epsilon_text

_ROWS = (
    ("clean_acc", "clean accuracy"),
    ("asr", "ASR, mean over the attacks swept"),
    ("worst_asr", "ASR, worst case over the attacks swept"),
    ("slope", "backdoor learning slope"),
)


def how_to_read(clean_tolerance: float) -> str:
    """A folded note on the terms, numbers and colours of the report."""
    items = [
        f"<b>Accurate</b>: clean accuracy within {clean_tolerance:g} of the best configuration's. "
        "Only accurate configurations are recommended or called vulnerable: a chance-level model "
        "resists nothing, it is useless.",
        "<b>A configuration</b> is one value of the learner's and defence's swept parameters; "
        "the attacker's parameters (poison rate, trigger…) are what it is tested against.",
        "<b>Mean ASR</b>: averaged over the poisoned attack settings swept; <b>worst case</b>: the "
        "attack setting with the highest mean ASR; <b>slope</b>: how fast the backdoor is learned "
        "as the first poisons arrive (β → 0).",
        "<b>±</b> is the standard deviation between seeds; <b>95% interval</b>: a Student-t "
        "interval over seeds (each seed first averaged over the attack settings), cut to [0, 1] "
        "for rates and accuracies and then marked “clipped”. With one seed there is no interval.",
        "<b>Colours</b>: in every map yellow is better for the defender (high accuracy, low ASR "
        "and slope); rates and accuracies use the range 0–1; grey: outside the clean-accuracy "
        "tolerance; outlined or ringed: the recommended configuration.",
        "<b>Importance</b>: the share of a metric's variance over the grid that each swept "
        "parameter explains alone (main effect), their interactions and the seeds.",
    ]
    body = "".join(f"<li>{item}</li>" for item in items)
    return f'<details class="howto"><summary>how to read this report</summary><ul>{body}</ul></details>'


def spread(m: dict | None) -> str:
    if m is None:
        return "—"
    if m.get("std") is None:
        return f"{m['mean']:.3f}"
    return f"{m['mean']:.3f} ± {m['std']:.3f}"


def interval(m: dict | None) -> str:
    if m is None:
        return "—"
    if m.get("ci_low") is None:
        return "n/a (one seed)"
    return f"{m['ci_low']:.3f} – {m['ci_high']:.3f}" + (" (clipped)" if m.get("ci_clipped") else "")


def verdict_html(v: Verdict) -> str:
    """The verdict box: the configuration, why, its numbers, the limits, the picks reconciled."""
    rec = v.recommended
    rows = []
    for key, label in _ROWS:
        m = rec.values.get(key)
        if m is None:
            continue
        if key == "worst_asr" and rec.worst_at:
            at = ", ".join(f"{k}={_plain(x)}" for k, x in rec.worst_at.items())
            label = f"{label} (at {at})"
        rows.append((label, spread(m), m["n"], interval(m)))
    if v.epsilon is not None:
        rows.append(("privacy (DP-SGD)", epsilon_text(v.epsilon), v.epsilon.get("n") or "—", "—"))
    limits = "".join(f"<li>{esc(line)}</li>" for line in v.limits)
    accurate = (
        f"Accurate: clean accuracy within {v.clean_tolerance:g} of the best ({v.best_clean:.3f}); "
        f"{v.n_accurate} of {v.n_configurations} configurations are."
    )
    return (
        '<div class="verdict" data-verdict="1">'
        '<div class="muted">verdict</div>'
        f'<div class="config">use {esc(format_choice(rec.choice))}</div>'
        f"<p>Recommended because {esc(v.why)}.</p>"
        + table_html(
            ["", "mean ± std over seeds", "seeds", "95% interval"],
            rows,
            [False, True, True, True],
        )
        + (f'<ul class="limits">{limits}</ul>' if limits else "")
        + (f"<p>{esc(v.privacy)}</p>" if v.privacy else "")
        + f"<p>{esc(v.agreement)}</p>"
        + _picks_table(v)
        + _by_attack_table(v)
        + f'<p class="note">{esc(accurate)} Intervals are 95% t-intervals over seeds, cut to [0, 1] for rates and marked “clipped” where cut.</p>'
        "</div>"
    )


def _picks_table(v: Verdict) -> str:
    rows = []
    for objective, p in v.picks.items():
        mark = " ← recommended" if objective == v.basis else ""
        rows.append(
            (
                Raw(f"<b>{esc(PICK_NAMES[objective])}</b>{esc(mark)}"),
                format_choice(p.choice),
                *(spread(p.values.get(k)) for k, _ in _ROWS if k in _columns(v)),
                USE_WHEN[objective],
            )
        )
    header = ["criterion", "picks", *(k for k, _ in _ROWS if k in _columns(v)), "use it when"]
    numeric = [False, False, *([True] * (len(header) - 3)), False]
    table = table_html(header, rows, numeric)
    if len({format_choice(p.choice) for p in v.picks.values()}) == 1:  # they agree: fold it
        return f"<details><summary>each criterion and when to use it</summary>{table}</details>"
    return table


def _columns(v: Verdict) -> set[str]:
    return {k for p in v.picks.values() for k in p.values}


def _by_attack_table(v: Verdict) -> str:
    if not v.by_attack:
        return ""
    axis = v.attack_axis or "attack"
    rows = [
        (
            _plain(r["value"]) if v.attack_axis else "the attack swept",
            f"{r['lowest_asr']:.3f}",
            format_choice(r["choice"]),
            f"{r['n_below']} of {r['n_accurate']}",
        )
        for r in v.by_attack
    ]
    return (
        f"<details><summary>the lowest mean ASR an accurate configuration reaches, per {esc(axis)}"
        "</summary>"
        + table_html(
            [axis, "lowest mean ASR", "by", "accurate configurations with ASR < 0.5"],
            rows,
            [True, True, False, True],
        )
        + "</details>"
    )


def _plain(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def picks_html(sels: dict[str, Selection | str]) -> str:
    """Each robust pick in detail: its metrics, its reason and the best eligible configurations."""
    parts = []
    for objective, sel in sels.items():
        if isinstance(sel, str):
            parts.append(f'<p class="error">by {esc(objective)}: {esc(sel)}</p>')
            continue
        rows = [(name, spread(m), m["n"], interval(m)) for name, m in sel.metrics.items()]
        table = sel.table
        cand_rows = [
            (
                r["rank"] or "outside",
                format_choice({a: r[a] for a in sel.axes}),
                _spread_row(r, "clean_acc"),
                _spread_row(r, "objective"),
            )
            for r in table.head(12).to_dict("records")
        ]
        parts.append(
            f'<div class="choice" data-objective="{esc(objective)}"><div class="muted">lowest '
            f"{esc(objective)} within {sel.clean_tolerance:g} of the best clean accuracy</div>"
            f'<div class="config">{esc(format_choice(sel.choice))}</div>'
            + table_html(
                ["metric", "mean ± std over seeds", "seeds", "95% interval"],
                rows,
                [False, True, True, True],
            )
            + f"<p>{esc(sel.reason)}</p>"
            + f"<details><summary>the {len(cand_rows)} best configurations (rank "
            "“outside”: beyond the clean-accuracy tolerance)</summary>"
            + table_html(
                ["rank", "configuration", "clean_acc", objective],
                cand_rows,
                [True, False, True, True],
            )
            + "</details></div>"
        )
    return "".join(parts) or '<p class="muted">nothing to recommend</p>'


def _spread_row(r: dict, prefix: str) -> str:
    value, std = r.get(prefix), r.get(f"{prefix}_std")
    if value is None or value != value:
        return "—"
    return f"{value:.3f}" + (f" ± {std:.3f}" if std is not None and std == std else "")
