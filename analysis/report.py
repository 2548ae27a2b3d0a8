"""The HTML report: one self-contained page per store that opens offline (plotly.js inlined once).

For each sweep: what was swept (spec, grid size, wall time, versions — from ``sweep.json``), the
recommended configuration with its reason and seed spread, heatmaps of clean accuracy, ASR and
slope (when recorded) over the learner's hyperparameters for each attack setting, the worst-case
ASR over the attacks, learning curves (when the sweep has a ``curves`` table), explanations
(gradient maps and most influential training samples of the recommended and the most vulnerable
configuration, `analysis.explain`), the Pareto front and failed results. With several sweeps, a
comparison table comes first.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import yaml

from analysis.heatmap import heatmap_info, render_heatmap
from analysis.page import Raw, esc, facts_html, figure_html, page_html, section_html, table_html
from analysis.pareto import pareto_points, render_pareto
from analysis.select import (
    OBJECTIVES,
    Selection,
    attack_axes,
    choice_axes,
    format_choice,
    select_robust,
)
from backdoor_sweep.errors import SweepError
from sweep.store import Store

#: heatmap metrics, in order, with a fixed colour range where the metric has one
HEATMAP_METRICS = {
    "clean_acc": None,
    "asr": (0.0, 1.0),
    "slope": None,
    "influential_poison_frac": (0.0, 1.0),
}


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


def _spread(m: dict) -> str:
    if m["std"] is None:
        return f"{m['mean']:.3f}"
    return f"{m['mean']:.3f} ± {m['std']:.3f}"


def _ci(m: dict) -> str:
    return (
        f"{m['ci_low']:.3f} – {m['ci_high']:.3f}" if m["ci_low"] is not None else "n/a (one seed)"
    )


def _what_was_swept(meta: dict, df: pd.DataFrame) -> str:
    spec = meta.get("spec", {})
    grid = spec.get("grid", {})
    sizes = " × ".join(str(len(v)) for v in grid.values()) or "1"
    n_cells = 1
    for v in grid.values():
        n_cells *= len(v)
    seeds = spec.get("seeds", [])
    counts = df["status"].value_counts().to_dict() if "status" in df else {"ok": len(df)}
    dataset = spec.get("dataset", {})
    attack = spec.get("attack", {})
    learner = spec.get("learner", {})
    facts = [
        ("description", spec.get("description", "")),
        ("dataset", f"{dataset.get('name', '?')}, classes {dataset.get('classes', 'all')}"),
        ("learner", ", ".join(f"{k}={v}" for k, v in learner.items())),
        ("attack", ", ".join(f"{k}={v}" for k, v in attack.items())),
        ("defence", ", ".join(f"{k}={v}" for k, v in spec.get("defence", {}).items())),
        (
            "grid",
            Raw(
                "<br>".join(
                    f"<b>{esc(k)}</b>: {esc(', '.join(map(str, v)))}" for k, v in grid.items()
                )
                or "—"
            ),
        ),
        (
            "grid size",
            f"{sizes} = {n_cells} configurations × {len(seeds)} seeds = {meta.get('n_results', n_cells * len(seeds))} results",
        ),
        ("seeds", ", ".join(map(str, seeds))),
        ("curves", "on" if spec.get("curves", {}).get("enabled") else "off"),
    ]
    run = [
        ("status", meta.get("status", "?")),
        ("results in store", f"{len(df)} ({', '.join(f'{v} {k}' for k, v in counts.items())})"),
        ("Ray Tune trials", meta.get("n_trials", "?")),
        (
            "wall time",
            f"{meta['wall_seconds']:.1f} s"
            if isinstance(meta.get("wall_seconds"), (int, float))
            else "?",
        ),
        ("created", str(meta.get("created_at", "?"))[:19].replace("T", " ")),
        ("finished", str(meta.get("finished_at") or "—")[:19].replace("T", " ")),
        ("spec digest", meta.get("spec_digest", "?")),
        (
            "versions",
            ", ".join(
                f"{k.removesuffix('_version')} {v}"
                for k, v in meta.get("versions", {}).items()
                if v
            ),
        ),
    ]
    spec_text = yaml.safe_dump(spec, sort_keys=False, default_flow_style=None)
    return (
        f'<div class="facts"><div>{facts_html(facts)}</div><div>{facts_html(run)}</div></div>'
        f"<details><summary>full spec</summary><pre>{esc(spec_text)}</pre></details>"
    )


def _recommendation(sels: dict[str, Selection | str]) -> str:
    parts = []
    for objective, sel in sels.items():
        if isinstance(sel, str):
            parts.append(f'<p class="error">by {esc(objective)}: {esc(sel)}</p>')
            continue
        rows = [(name, _spread(m), m["n"], _ci(m)) for name, m in sel.metrics.items()]
        cand = sel.table[sel.table["eligible"]].head(10)
        cand_rows = [
            (
                r["rank"],
                format_choice({a: r[a] for a in sel.axes}),
                _spread_row(r, "clean_acc"),
                _spread_row(r, "objective"),
            )
            for r in cand.to_dict("records")
        ]
        parts.append(
            f'<div class="choice" data-objective="{esc(objective)}"><div class="muted">lowest {esc(objective)} '
            f"within {sel.clean_tolerance:g} of the best clean accuracy</div>"
            f'<div class="config">{esc(format_choice(sel.choice))}</div>'
            + table_html(
                ["metric", "mean ± std over seeds", "seeds", "95% interval"],
                rows,
                [False, True, True, True],
            )
            + f"<p>{esc(sel.reason)}</p>"
            + f"<details><summary>the {len(cand)} best eligible configurations</summary>"
            + table_html(
                ["rank", "configuration", "clean_acc", objective],
                cand_rows,
                [True, False, True, True],
            )
            + "</details></div>"
        )
    return "".join(parts) or '<p class="muted">nothing to recommend</p>'


def _spread_row(r: dict, prefix: str) -> str:
    std = r.get(f"{prefix}_std")
    return f"{r[prefix]:.3f}" + (f" ± {std:.3f}" if std is not None and std == std else "")


def heatmap_axes(df: pd.DataFrame) -> tuple[str, str, list[str]] | None:
    """(x, y, facets): the first two learner axes, one panel per attack setting (≤ 2 facets)."""
    choice, attack = choice_axes(df), attack_axes(df)
    if len(choice) >= 2:
        return choice[0], choice[1], attack[:2]
    if len(choice) == 1 and attack:
        return choice[0], attack[0], attack[1:3]
    return None


def _heatmaps(df: pd.DataFrame) -> str:
    axes = heatmap_axes(df)
    if axes is None:
        return '<p class="muted">no heatmap: the sweep varies fewer than two axes (learner parameters and attack settings)</p>'
    x, y, facets = axes
    parts = []
    for metric, zrange in HEATMAP_METRICS.items():
        if not _has(df, metric):
            continue
        info = heatmap_info(df, x=x, y=y, metric=metric, facet=facets or None, agg="mean")
        note = f"mean over seeds{' and ' + ', '.join(info.hidden) if info.hidden else ''}; hover for std and n"
        fig = render_heatmap(
            info,
            title=f"{metric} over {x} × {y}"
            + (f", one panel per {' × '.join(facets)}" if facets else ""),
            zrange=zrange,
        )
        parts.append(f'<h3>{esc(metric)}</h3><p class="note">{esc(note)}</p>{figure_html(fig)}')
    if _has(df, "asr") and attack_axes(df) and y not in attack_axes(df):
        info = heatmap_info(df, x=x, y=y, metric="asr", agg="worst")
        fig = render_heatmap(
            info,
            title=f"worst-case ASR over {', '.join(info.hidden)}",
            zrange=(0.0, 1.0),
            max_cols=1,
        )
        parts.append(
            '<h3>worst-case ASR over the attacks swept</h3><p class="note">per cell: the attack setting with '
            f"the highest seed-mean ASR (hover shows which); the objective <code>worst_asr</code></p>{figure_html(fig, 420, max_width=760)}"
        )
    return "".join(parts)


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


def _explanations(store: Store, name: str, df: pd.DataFrame, sels: dict) -> str:
    """Gradient maps and most influential training samples (`analysis.explain`) of the
    recommended (by ASR) and the most vulnerable configuration, each rebuilt under the strongest
    attack swept, first seed."""
    from analysis.explain import explain_info, rebuild, representative_rows
    from analysis.explain_page import explain_block

    sel = sels.get("asr")
    if not isinstance(sel, Selection):
        return ""
    picks = [("recommended", sel.choice)]
    ranked = sel.table[sel.table["objective"].notna()].sort_values(
        "objective", ascending=False, kind="mergesort"
    )
    if not ranked.empty:
        worst = {a: ranked.iloc[0][a] for a in sel.axes}
        if format_choice(worst) != format_choice(sel.choice):
            picks.append(("most vulnerable", worst))
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
        "`backdoor-sweep explain --where ...` shows more"
    )
    return f'<h3>explanations</h3><p class="note">{esc(note)}</p>' + "".join(parts)


def _pareto(df: pd.DataFrame, sels: dict[str, Selection | str]) -> str:
    parts = []
    for y in ("asr", "slope"):
        if not _has(df, y) or not choice_axes(df):
            continue
        sel = sels.get(y)
        points = pareto_points(df, x="clean_acc", y=y)
        fig = render_pareto(
            points, "clean_acc", y, highlight=sel.choice if isinstance(sel, Selection) else None
        )
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
            _what_was_swept(meta, df) + '<p class="error">no results stored yet</p>',
            "sweep",
        ), summary
    sels = _selections(df, clean_tolerance)
    summary.update(ok=int((df["status"] == "ok").sum()) if "status" in df else len(df))
    for objective, sel in sels.items():
        if isinstance(sel, Selection):
            summary[objective] = sel
    body = (
        "<h3>what was swept</h3>"
        + _what_was_swept(meta, df)
        + "<h3>recommended configuration</h3>"
        + _recommendation(sels)
        + _shown(_heatmaps, df)
        + _curves(store, name, df)
        + _shown(_explanations, store, name, df, sels)
        + "<h3>Pareto front</h3>"
        + (
            _shown(_pareto, df, sels)
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
    header = [
        "sweep",
        "results",
        "ok",
        "wall s",
        "best clean_acc",
        "choice by asr",
        "its asr",
        "choice by worst_asr",
        "its worst_asr",
        "choice by slope",
        "its slope",
    ]
    rows = []
    for s in summaries:
        row = [s["sweep"], s["results"], s.get("ok", 0), s["wall_s"]]
        asr = s.get("asr")
        row.append(f"{asr.table['clean_acc'].max():.3f}" if asr is not None else "—")
        for objective in ("asr", "worst_asr", "slope"):
            sel = s.get(objective)
            row += (
                [format_choice(sel.choice), _spread(sel.metrics[objective])] if sel else ["—", "—"]
            )
        rows.append(row)
    return section_html(
        "comparison",
        "comparison of sweeps",
        table_html(header, rows, [False, True, True, True, True]),
    )


def report_html(
    store: str | Path | Store, sweeps: list[str] | None = None, clean_tolerance: float = 0.01
) -> str:
    """The report page for ``sweeps`` (default: every sweep in the store) as one HTML string."""
    st = store if isinstance(store, Store) else Store(store)
    if not st.root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(st.root)!r} (not found)")
    names = list(sweeps) if sweeps else st.sweeps()
    if not names:
        raise SweepError(
            f"--store must hold at least one sweep; {st.root} has none (run `backdoor-sweep run` first)"
        )
    sections, summaries = [], []
    for name in names:
        html_, summary = sweep_section(st, name, clean_tolerance)
        sections.append(html_)
        summaries.append(summary)
    body = (_comparison(summaries) if len(names) > 1 else "") + "".join(sections)
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
        footer=f"store {esc(st.root.resolve())} · written {stamp} · intervals are 95% t-intervals over seeds",
    )


def build_report(
    store: str | Path | Store,
    sweeps: list[str] | None = None,
    out: str | Path = "report.html",
    clean_tolerance: float = 0.01,
) -> Path:
    """Write the report to ``out`` and return its path."""
    text = report_html(store, sweeps, clean_tolerance)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
