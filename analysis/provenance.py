"""What was swept and how the run went, from a sweep's ``sweep.json`` and its stored results.

The spec (dataset, learner, attack, defence, grid, seeds), the grid's size, and the run's status,
counts, wall time, dates, spec digest and library versions: what a reader needs to reproduce or
trust the rest of the report.
"""

from __future__ import annotations

import pandas as pd
import yaml

from analysis.page import Raw, esc, facts_html


def swept_html(meta: dict, df: pd.DataFrame) -> str:
    """Two fact tables (the spec; the run) and the full spec, folded."""
    spec = meta.get("spec", {})
    grid = spec.get("grid", {})
    # a range ({loguniform: [low, high]}) is sampled: one value per configuration
    sizes = " × ".join(str(len(v)) if isinstance(v, list) else "sampled" for v in grid.values())
    sizes = sizes or "1"
    n_cells = 1
    for v in grid.values():
        n_cells *= len(v) if isinstance(v, list) else 1
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
                "<br>".join(f"<b>{esc(k)}</b>: {esc(_values_text(v))}" for k, v in grid.items())
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


def _values_text(values) -> str:
    """A grid axis in words: its list, or its range (``loguniform [0.01, 100]``)."""
    if isinstance(values, dict):
        return "; ".join(f"{kind} {bounds}" for kind, bounds in values.items())
    return ", ".join(map(str, values))
