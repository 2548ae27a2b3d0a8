"""`select` and `report`: the robust configuration of a sweep, and the report that explains it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from backdoor_sweep.cli.app import app
from backdoor_sweep.cli.options import (
    CleanToleranceOpt,
    StoreOpt,
    SweepsOpt,
    check_choice,
    existing_store,
    out_option,
    pick_sweeps,
    split_list,
    where_option,
)

#: what `select --metric` may minimise
SELECT_METRICS = ("asr", "slope", "worst_asr")


@app.command()
def select(
    sweep: SweepsOpt = None,
    store: StoreOpt = None,
    metric: Annotated[
        str,
        typer.Option(
            "--metric", metavar="METRIC", help=f"Metric to minimise: {', '.join(SELECT_METRICS)}."
        ),
    ] = "asr",
    clean_tolerance: CleanToleranceOpt = 0.01,
    axes: Annotated[
        str | None,
        typer.Option(
            "--axes",
            metavar="A,B",
            help="Choice axes, comma-separated (default: the varying learner/defence parameters).",
        ),
    ] = None,
    where: Annotated[str | None, where_option()] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="table, or json (choice, metrics, reason, every candidate; a list for several sweeps).",
        ),
    ] = "table",
) -> None:
    """The robust configuration: lowest metric among those within the clean-accuracy tolerance.

    One choice per sweep (default: every sweep in the store).
    """
    check_choice("--metric", metric, SELECT_METRICS)
    check_choice("--format", fmt, ("table", "json"))
    st = existing_store(store)
    names = pick_sweeps(st, sweep)
    from analysis.load import load
    from analysis.select import select_robust

    chosen = [
        (
            name,
            select_robust(
                load(st, name, where),
                clean_tolerance=clean_tolerance,
                objective=metric,
                axes=split_list(axes),
            ),
        )
        for name in names
    ]
    if fmt == "json":
        docs = [json.loads(sel.to_json(sweep=name)) for name, sel in chosen]
        typer.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2, allow_nan=False))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    for name, sel in chosen:
        table = Table(title=f"{name}: robust choice by {metric}")
        for col in ("", "value", "seeds", "95% interval"):
            table.add_column(col)
        for k, v in sel.choice.items():
            table.add_row(k, str(v), "", "")
        for k, m in sel.metrics.items():
            std = f" ± {m['std']:.3f}" if m["std"] is not None else ""
            ci = f"{m['ci_low']:.3f} – {m['ci_high']:.3f}" if m["ci_low"] is not None else "n/a"
            ci += " (clipped to [0, 1])" if m.get("ci_clipped") else ""
            table.add_row(k, f"{m['mean']:.3f}{std}", str(m["n"]), ci)
        console.print(table)
        console.print(sel.reason)


@app.command()
def report(
    sweep: SweepsOpt = None,
    store: StoreOpt = None,
    out: Annotated[Path, out_option("HTML file (self-contained: opens offline).")] = Path(
        "report.html"
    ),
    clean_tolerance: CleanToleranceOpt = 0.01,
) -> None:
    """One self-contained HTML report: the verdict, heatmaps, importance, curves, explanations."""
    st = existing_store(store)
    names = pick_sweeps(st, sweep)
    from analysis.report import build_report

    def progress(done: int, total: int, name: str) -> None:
        typer.echo(
            f"report: sweep {done + 1}/{total} {name} (explanations rebuild models)", err=True
        )

    path = build_report(st, names, out, clean_tolerance=clean_tolerance, progress=progress)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; {', '.join(names)})")
