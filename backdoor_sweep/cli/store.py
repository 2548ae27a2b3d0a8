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
    pick_sweeps,
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
) -> None:
    """SQL over the store (DuckDB, read-only, confined to the store)."""
    check_choice("--format", fmt, ("table", "csv", "json"))
    st = existing_store(store)
    from sweep.query import run_query

    df = run_query(st, sql)
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
    """The sweeps in a store: size on disk, results by status and dates."""
    st = existing_store(store)
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rich.console import Console
    from rich.table import Table

    from sweep.store import read_part

    table = Table()
    for col in (
        "sweep",
        "status",
        "results",
        "ok",
        "error",
        "expected",
        "size",
        "created",
        "finished",
        "wall s",
    ):
        table.add_column(col)
    for name in pick_sweeps(st, sweep) if sweep else st.sweeps():
        meta = st.read_meta(name)
        counts: dict[str, int] = {}
        for part in st.parts(name, "trials"):
            try:
                status = pq.read_table(part, columns=["status"]).column("status").to_pylist()
            except (pa.ArrowException, OSError):  # a corrupt part: read_part names it in one line
                status = read_part(part)["status"].tolist()
            for v in status:
                counts[v] = counts.get(v, 0) + 1
        size = sum(p.stat().st_size for p in st.sweep_dir(name).rglob("*") if p.is_file())
        wall = meta.get("wall_seconds")
        table.add_row(
            name,
            str(meta.get("status", "?")),
            str(sum(counts.values())),
            str(counts.get("ok", 0)),
            str(counts.get("error", 0)),
            str(meta.get("n_results", "?")),
            _size(size),
            str(meta.get("created_at", ""))[:19].replace("T", " "),
            str(meta.get("finished_at") or "")[:19].replace("T", " "),
            f"{wall:.1f}" if isinstance(wall, (int, float)) else "",
        )
    Console(width=180).print(table)


def _size(n: float) -> str:
    result = "B"
    for result in ("B", "kB", "MB", "GB"):
        if n < 1024 or result == "GB":
            break
        n /= 1024
    return f"{n:.0f} {result}" if result == "B" else f"{n:.1f} {result}"


@app.command()
def verify(store: StoreOpt = None) -> None:
    """Check a store: foreign or corrupt files, schemas, duplicates, orphans, the plan; exit 2 if wrong."""
    from sweep.verify import format_report, verify_store

    report = verify_store(existing_store(store))
    for line in format_report(report):
        typer.echo(line)
    if not report.ok:
        raise SweepError(
            f"store {report.root} has {len(report.problems)} problem(s) (listed above)"
        )
