"""The HTML report: one self-contained page per store that opens offline (plotly.js inlined once).

For each sweep, the story in order: the verdict (`analysis.verdict`: the configuration to use, why,
its clean accuracy, mean and worst-case ASR with intervals, what no accurate configuration achieves,
the three robust picks reconciled; ε with δ under DP-SGD), what was swept (spec, grid size, wall
time, versions — from ``sweep.json``), each pick in detail, heatmaps of clean accuracy, ASR and
slope (when recorded) over the grid's axes with the cells outside the clean-accuracy tolerance
grey and the recommended configuration outlined, the worst-case ASR over the attacks, what moves
ASR and clean accuracy (`analysis.importance`) and every cell in parallel coordinates
(`analysis.parallel`), privacy against robustness and accuracy for DP-SGD sweeps
(`analysis.privacy`), learning curves (when the sweep has a ``curves`` table), explanations
(gradient maps and most influential training samples of the recommended and the most vulnerable
accurate configuration, `analysis.explain`), the Pareto front and failed results. With several
sweeps, a comparison table comes first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from analysis.heatmap import default_axes, heatmap_info
from analysis.heatmap_figure import render_heatmap
from analysis.page import esc, figure_html, page_html, section_html, table_html
from analysis.pareto import pareto_points, render_pareto
from analysis.provenance import swept_html
from analysis.search_views import decision_rows, is_grid, search_section
from analysis.select import (
    OBJECTIVES,
    Selection,
    attack_axes,
    choice_axes,
    format_choice,
    grid_axes,
    select_robust,
)
from analysis.verdict import Verdict, most_vulnerable, verdict_info
from analysis.verdict_page import how_to_read, picks_html, spread, verdict_html
from backdoor_sweep.errors import SweepError
from sweep.store import Store

#: heatmap metrics, in order (colour ranges and meanings: `analysis.scales`)
HEATMAP_METRICS = ("clean_acc", "asr", "slope", "influential_poison_frac")
#: what every interval in the report is (docs/science.md §9)
INTERVALS = (
    "intervals are 95% t-intervals over seeds; those of rates and accuracies are cut to [0, 1] "
    "where the t-interval leaves it, marked “clipped”"
)


def _has(df: pd.DataFrame, col: str) -> bool:
    return col in df.columns and pd.to_numeric(df[col], errors="coerce").notna().any()


def _selections(df: pd.DataFrame, clean_tolerance: float) -> dict[str, Selection | str]:
    out: dict[str, Selection | str] = {}
    for objective in OBJECTIVES:
        if objective == "slope" and not _has(df, "slope"):
            continue
        try:
            out[objective] = select_robust(df, clean_tolerance=clean_tolerance, objective=objective)
        except SweepError as err:
            out[objective] = str(err)
    return out


def _heatmaps(df: pd.DataFrame, tol: float, chosen: dict | None) -> str:
    df = decision_rows(df)  # a slope screen's stage one saw one attack only
    try:
        x, y, facets = default_axes(df)
    except SweepError:
        return '<p class="muted">no heatmap: the sweep varies no axis</p>'
    if not is_grid(df, x, y):
        return (
            f'<p class="muted">no heatmap: the sampled ({esc(x)}, {esc(y)}) values are not a '
            "grid; see the search part</p>"
        )
    parts = []
    for metric in HEATMAP_METRICS:
        if not _has(df, metric):
            continue
        info = heatmap_info(
            df, x=x, y=y, metric=metric, facet=facets or None, clean_tolerance=tol, mark=chosen
        )
        fig = render_heatmap(info)
        parts.append(f"<h3>{esc(metric)}</h3>{figure_html(fig)}")
    if _has(df, "asr") and attack_axes(df) and y not in attack_axes(df):
        info = heatmap_info(
            df, x=x, y=y, metric="asr", agg="worst", clean_tolerance=tol, mark=chosen
        )
        fig = render_heatmap(info, max_cols=1)
        parts.append(
            '<h3>worst-case ASR over the attacks swept</h3><p class="note">per cell: the attack '
            "setting with the highest seed-mean ASR (hover shows which); the objective "
            f"<code>worst_asr</code></p>{figure_html(fig, max_width=760)}"
        )
    note = (
        "In every map yellow is better for the defender (high accuracy, low ASR and slope); rates "
        "and accuracies share the range 0–1; grey cells are outside the clean-accuracy tolerance; "
        "the recommended configuration is outlined; hover for std and n."
    )
    return f'<p class="note">{esc(note)}</p>' + "".join(parts)


def _drivers(df: pd.DataFrame, tol: float) -> str:
    """What moves ASR and clean accuracy (variance shares), and every cell in parallel coordinates."""
    from analysis.importance import importance_info, render_importance
    from analysis.parallel import parallel_info, render_parallel

    if not grid_axes(df):
        return ""
    info = importance_info(df)
    rows = [
        (
            m.metric,
            ", ".join(f"{a} {share:.0%}" for a, share in m.ranked()),
            f"{m.interactions:.0%}",
            f"{m.seeds:.0%}",
        )
        for m in info.metrics
    ]
    header = ["metric", "main effects, largest first", "interactions", "seeds"]
    note = (
        "Main-effect share of each metric's variance over the grid (the first-order term of a "
        "functional ANOVA, exact on the grid), their interactions and the spread between seeds; "
        "ASR over the poisoned results."
    )
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in info.notes)
    parallel = render_parallel(parallel_info(df, clean_tolerance=tol))
    return (
        f'<h3>what moves ASR and clean accuracy</h3><p class="note">{esc(note)}</p>'
        + table_html(header, rows)
        + notes
        + figure_html(render_importance(info), max_width=900)
        + "<h3>every grid cell</h3>"
        + figure_html(parallel)
    )


def _privacy(df: pd.DataFrame, tol: float, chosen: dict | None) -> str:
    from analysis.privacy import epsilon_label, is_private, privacy_info, render_privacy

    if not is_private(df) or not choice_axes(df):
        return ""
    info = privacy_info(df, tol)
    rows = [
        (
            r["label"],
            epsilon_label(r["epsilon"]),
            *(_mean_std(r, m) for m in ("clean_acc", "asr", "worst_asr")),
            "yes" if r["eligible"] else "no",
        )
        for r in info.table.to_dict("records")
    ]
    return (
        f"<h3>privacy, robustness and accuracy</h3>{figure_html(render_privacy(info, chosen))}"
        + table_html(
            [
                "configuration",
                f"ε (δ = {info.delta:g})",
                "clean_acc",
                "asr",
                "worst_asr",
                "accurate",
            ],
            rows,
            [False, True, True, True, True, False],
        )
    )


def _mean_std(r: dict, m: str) -> str:
    if r.get(m) is None or r[m] != r[m]:
        return "—"
    std = r.get(f"{m}_std")
    return f"{r[m]:.3f}" + (f" ± {std:.3f}" if std is not None and std == std else "")


def _curves(store: Store, name: str, df: pd.DataFrame) -> str:
    """Learning curves (`analysis.curves`): a panel per configuration, a colour per poison rate."""
    from analysis.curves import curves_info, render_curves

    curves = store.read_table("curves", name)
    if curves.empty:
        return ""
    attack = attack_axes(df)
    colour_by = "poison_rate" if "poison_rate" in df.columns or not attack else attack[0]
    try:
        fig = render_curves(curves_info(df, curves, colour_by=colour_by))
    except SweepError as err:
        return f'<h3>backdoor learning curves</h3><p class="error">{esc(err)}</p>'
    note = (
        "mean over seeds and the other attack settings; click a legend entry to hide a poison rate"
    )
    return f'<h3>backdoor learning curves</h3><p class="note">{esc(note)}</p>{figure_html(fig)}'


def _explanations(
    store: Store, name: str, df: pd.DataFrame, sels: dict, chosen: dict | None
) -> str:
    """Gradient maps and most influential training samples (`analysis.explain`) of the
    recommended and the most vulnerable accurate configuration (a chance-level model is not
    vulnerable, it is useless), each rebuilt under the strongest attack swept, first seed."""
    from analysis.explain import explain_info, rebuild, representative_rows
    from analysis.explain_page import explain_block

    sel = sels.get("asr")
    if not isinstance(sel, Selection) or chosen is None:
        return ""
    picks = [("recommended", chosen)]
    worst = most_vulnerable(sel)
    if worst is not None and format_choice(worst) != format_choice(chosen):
        picks.append(("most vulnerable accurate configuration", worst))
    parts = []
    for label, choice in picks:
        title = f"<h4>{esc(label)}: {esc(format_choice(choice))}</h4>"
        rows = representative_rows(df, choice)
        if rows.empty:
            parts.append(title + '<p class="muted">no successful poisoned result to explain</p>')
            continue
        try:
            info = explain_info(rebuild(store, name, rows.iloc[0].to_dict()), k=10)
        except (SweepError, ValueError, OSError) as err:
            parts.append(title + f'<p class="error">cannot rebuild it: {esc(err)}</p>')
            continue
        parts.append(
            title + f'<p class="note">{esc(info.title)}</p>' + explain_block(info, compact=True)
        )
    note = (
        "each rebuilt from the spec under the attack with the highest mean ASR, first seed; "
        "the most vulnerable is the accurate configuration with the highest mean ASR; "
        "`backdoor-sweep explain` shows more"
    )
    return f'<h3>explanations</h3><p class="note">{esc(note)}</p>' + "".join(parts)


def _pareto(df: pd.DataFrame, chosen: dict | None, tol: float) -> str:
    parts = []
    for y in ("asr", "slope"):
        if not _has(df, y) or not choice_axes(df):
            continue
        points = pareto_points(df, x="clean_acc", y=y)
        fig = render_pareto(points, "clean_acc", y, highlight=chosen, clean_tolerance=tol)
        front = points[points["on_front"]]
        rows = [
            (r["label"], f"{r['clean_acc']:.3f}", f"{r[y]:.3f}") for r in front.to_dict("records")
        ]
        parts.append(
            f"<h3>clean accuracy vs {esc(y)}</h3>{figure_html(fig)}"
            + table_html(["on the front", "clean_acc", y], rows, [False, True, True])
        )
    return "".join(parts)


def _errors(df: pd.DataFrame) -> str:
    if "status" not in df or not (df["status"] == "error").any():
        return ""
    bad = df[df["status"] == "error"]
    axes = [c for c in choice_axes(df) + attack_axes(df) + ["seed"] if c in bad]
    rows = [
        (format_choice({a: r[a] for a in axes}), str(r.get("error", ""))[:300])
        for r in bad.head(20).to_dict("records")
    ]
    return f'<h3 class="error">{len(bad)} failed results</h3>' + table_html(
        ["configuration", "error"], rows
    )


def sweep_section(store: Store, name: str, clean_tolerance: float = 0.01) -> tuple[str, dict]:
    """The HTML of one sweep's section and the summary row used by the comparison table."""
    meta = store.read_meta(name)
    df = store.read_table("trials", name)
    summary: dict = {"sweep": name, "results": len(df), "wall_s": meta.get("wall_seconds")}
    if df.empty:
        return section_html(
            name,
            f"sweep {name}",
            swept_html(meta, df) + '<p class="error">no results stored yet</p>',
            "sweep",
        ), summary
    sels = _selections(df, clean_tolerance)
    summary.update(ok=int((df["status"] == "ok").sum()) if "status" in df else len(df))
    for objective, sel in sels.items():
        if isinstance(sel, Selection):
            summary[objective] = sel
    verdict: Verdict | None = None
    try:
        verdict = verdict_info(df, clean_tolerance, sels)
        head = verdict_html(verdict)
        summary["verdict"] = verdict
    except SweepError as err:
        head = f'<div class="verdict"><p class="error">no verdict: {esc(err)}</p></div>'
    chosen = verdict.recommended.choice if verdict is not None else None
    body = (
        head
        + "<h3>what was swept</h3>"
        + swept_html(meta, df)
        + "<h3>the robust picks in detail</h3><details><summary>each pick's metrics, reason and "
        "best configurations</summary>"
        + picks_html(sels)
        + "</details>"
        + _shown(search_section, df, meta, clean_tolerance)
        + _shown(_heatmaps, df, clean_tolerance, chosen)
        + _shown(_drivers, df, clean_tolerance)
        + _shown(_privacy, df, clean_tolerance, chosen)
        + _curves(store, name, df)
        + _shown(_explanations, store, name, df, sels, chosen)
        + "<h3>Pareto front</h3>"
        + (
            _shown(_pareto, df, chosen, clean_tolerance)
            or '<p class="muted">nothing to draw: it needs successful results and a varying learner parameter</p>'
        )
        + _errors(df)
    )
    return section_html(name, f"sweep {name}", body, "sweep"), summary


def _shown(part, *args) -> str:
    """A part of the section, or the one-line reason it cannot be drawn (e.g. every result failed)."""
    try:
        return part(*args)
    except SweepError as err:
        return f'<p class="error">{esc(err)}</p>'


def _comparison(summaries: list[dict]) -> str:
    """One row per sweep: its verdict, and the picks that disagree with it."""
    from analysis.privacy import epsilon_text
    from analysis.verdict import PICK_NAMES

    dp = any(s.get("verdict") is not None and s["verdict"].epsilon for s in summaries)
    header = [
        "sweep",
        "results (ok)",
        "wall s",
        "best clean_acc",
        "recommended",
        "by",
        "clean_acc",
        "asr",
        "worst_asr",
        *(["privacy"] if dp else []),
        "other picks",
    ]
    rows = []
    for s in summaries:
        row = [s["sweep"], f"{s['results']} ({s.get('ok', 0)})", s["wall_s"]]
        asr = s.get("asr")
        row.append(f"{asr.table['clean_acc'].max():.3f}" if asr is not None else "—")
        v: Verdict | None = s.get("verdict")
        if v is None:
            rows.append(row + ["—"] * (len(header) - len(row)))
            continue
        values = v.recommended.values
        row += [
            format_choice(v.recommended.choice),
            PICK_NAMES[v.basis],
            *(spread(values.get(k)) for k in ("clean_acc", "asr", "worst_asr")),
        ]
        if dp:
            row.append(epsilon_text(v.epsilon) if v.epsilon else "—")
        others = [
            f"{PICK_NAMES[o]}: {format_choice(p.choice)} ({p.values[o]['mean']:.3f})"
            for o, p in v.picks.items()
            if p.choice != v.recommended.choice
        ]
        row.append("; ".join(others) or "all agree")
        rows.append(row)
    return section_html(
        "comparison",
        "comparison of sweeps",
        table_html(header, rows, [False, True, True, True, False, False, True, True, True]),
    )


def report_html(
    store: str | Path | Store,
    sweeps: list[str] | None = None,
    clean_tolerance: float = 0.01,
    progress: Callable[[int, int, str], None] | None = None,
) -> str:
    """The report page for ``sweeps`` (default: every sweep in the store) as one HTML string.

    ``progress(done, total, sweep)`` is called before each sweep's section: a section rebuilds
    models for its explanations, so a report can take a minute or more.
    """
    st = store if isinstance(store, Store) else Store(store)
    if not st.root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(st.root)!r} (not found)")
    names = list(sweeps) if sweeps else st.sweeps()
    if not names:
        raise SweepError(
            f"--store must hold at least one sweep; {st.root} has none (run `backdoor-sweep run` first)"
        )
    sections, summaries = [], []
    for i, name in enumerate(names):
        if progress is not None:
            progress(i, len(names), name)
        html_, summary = sweep_section(st, name, clean_tolerance)
        sections.append(html_)
        summaries.append(summary)
    body = (
        how_to_read(clean_tolerance)
        + (_comparison(summaries) if len(names) > 1 else "")
        + "".join(sections)
    )
    nav = ([("comparison", "comparison")] if len(names) > 1 else []) + [(n, n) for n in names]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = (
        f"backdoor-sweep report: {', '.join(names)}"
        if len(names) <= 3
        else f"backdoor-sweep report: {len(names)} sweeps"
    )
    return page_html(
        title,
        nav,
        body,
        footer=f"store {esc(st.root.resolve())} · written {stamp} · {INTERVALS}",
    )


def build_report(
    store: str | Path | Store,
    sweeps: list[str] | None = None,
    out: str | Path = "report.html",
    clean_tolerance: float = 0.01,
    progress: Callable[[int, int, str], None] | None = None,
) -> Path:
    """Write the report to ``out`` and return its path (``progress``: see `report_html`)."""
    text = report_html(store, sweeps, clean_tolerance, progress)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
