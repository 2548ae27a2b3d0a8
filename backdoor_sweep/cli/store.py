"""`query`, `ls` and `verify`: reading and checking a store (fast to start: no Ray, no sklearn)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from backdoor_sweep.cli.app import app
from backdoor_sweep.cli.options import (
    StoreOpt,
    SweepsOpt,
    check_choice,
    existing_store,
    flag,
    pick_sweeps,
    store_of,
)
from backdoor_sweep.errors import SweepError


@app.command()
def query(
    sql: Annotated[
        str,
        typer.Argument(
            metavar="SQL", help="A SELECT over the tables `trials`, `curves` and `dynamics`."
        ),
    ],
    store: StoreOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="table, csv or json.")
    ] = "table",
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", metavar="SECONDS", help="Stop the query after this many seconds."
        ),
    ] = 60.0,
    memory_limit: Annotated[
        str,
        typer.Option(
            "--memory-limit",
            metavar="SIZE",
            help="Most memory DuckDB may use, e.g. 512MB, 4GB.",
        ),
    ] = "4GB",
) -> None:
    """SQL over the store (DuckDB, read-only, confined to the store, bounded in time and memory)."""
    check_choice("--format", fmt, ("table", "csv", "json"))
    st = existing_store(store)
    from sweep.query import run_query

    df = run_query(st, sql, timeout=timeout, memory_limit=memory_limit)
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(df.to_json(orient="records", date_format="iso") + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False)
        for col in df.columns:
            table.add_column(str(col))
        for row in df.itertuples(index=False):
            table.add_row(*[_cell(v) for v in row])
        Console(width=200).print(table)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


@app.command("ls")
def ls_(store: StoreOpt = None, sweep: SweepsOpt = None) -> None:
    """The sweeps in a store: state, results by status, size on disk and dates."""
    st = existing_store(store)
    wanted = set(pick_sweeps(st, sweep)) if sweep else None
    from rich.console import Console
    from rich.table import Table

    from sweep.inventory import inventory

    lines, problems = inventory(st)
    table = Table()
    for col in (
        "sweep",
        "status",
        "results",
        "ok",
        "error",
        "stopped",
        "expected",
        "size",
        "created",
        "finished",
        "wall s",
    ):
        table.add_column(col)
    for line in lines:
        if wanted is not None and line.name not in wanted:
            continue
        table.add_row(
            line.name,
            line.state,
            str(sum(line.counts.values())),
            str(line.counts.get("ok", 0)),
            str(line.counts.get("error", 0)),
            str(line.counts.get("stopped", 0)),  # by an execution.scheduler
            str(line.expected),
            _size(line.size),
            line.created,
            line.finished,
            f"{line.wall_seconds:.1f}" if line.wall_seconds is not None else "",
        )
    Console(width=180).print(table)
    if problems:  # the other sweeps are listed above; the first problem in one line, exit 2
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SweepError(problems[0] + more)


def _size(n: float) -> str:
    result = "B"
    for result in ("B", "kB", "MB", "GB"):
        if n < 1024 or result == "GB":
            break
        n /= 1024
    return f"{n:.0f} {result}" if result == "B" else f"{n:.1f} {result}"


@app.command()
def verify(
    store: StoreOpt = None,
    repair: Annotated[
        bool,
        flag(
            "--repair",
            "Repair what is found: delete temporaries, set bad files aside, rewrite parts with the "
            "sweep's schema (nothing is deleted but half-written files).",
        ),
    ] = False,
) -> None:
    """Check a store: foreign or corrupt files, schemas, duplicates, orphans, the plan; exit 2 if wrong."""
    from sweep.verify import format_report, verify_store

    st = store_of(store)
    report = verify_store(st)
    if repair and report.fixes:
        from sweep.repair import repair_store

        for line in repair_store(st, report):
            typer.echo(line)
        report = verify_store(st)
    for line in format_report(report):
        typer.echo(line)
    if not report.ok:
        raise SweepError(
            f"store {report.root} has {len(report.problems)} problem(s) (listed above)"
        )
