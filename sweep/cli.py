"""The `backdoor-sweep` command line.

Every command turns a `SweepError` into one line on stderr and exit code 2; anything else is a
bug and keeps its traceback. Heavy imports (Ray, torch, plotly) happen inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from sweep.errors import SweepError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Sweeps of backdoor-poisoning experiments on Ray Tune, and robust hyperparameter choice.",
)

StoreOpt = Annotated[Optional[Path], typer.Option("--store", help="Result store folder (default: the spec's, ./results).")]
SweepOpt = Annotated[Optional[str], typer.Option("--sweep", help="Sweep name (default: the only or newest sweep).")]


def _store(store: Path | None):
    from sweep.store import Store

    return Store(store if store is not None else "results")


def pick_sweep(store, sweep: str | None) -> str:
    """The named sweep, or the most recently created one in the store."""
    names = store.sweeps()
    if sweep is not None:
        store.read_meta(sweep)
        return sweep
    if not names:
        raise SweepError(f"--store must hold at least one sweep; {store.root} has none (run `backdoor-sweep run` first)")
    return max(names, key=lambda n: store.read_meta(n).get("created_at", ""))


@app.command()
def run(
    spec: Annotated[Optional[Path], typer.Argument(help="Sweep spec (YAML). Default: search_spaces/digits_svm_rbf.yaml.")] = None,
    store: StoreOpt = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Sweep name (default: the spec's).")] = None,
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster: auto or HOST:PORT. Default: start Ray in-process.")] = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="Tiny grid: first two values per axis, first seed.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Finish a sweep of this name that was interrupted.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a sweep of this name.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> None:
    """Run a sweep (the embedded default when no SPEC is given) and write the store."""
    from sweep.spec import load_spec, with_overrides

    if resume and overwrite:
        raise SweepError("--resume and --overwrite must not be given together; got both")
    s = load_spec(spec)
    if smoke:
        s = s.smoke()
    s = with_overrides(s, name=name, store=str(store) if store is not None else None)
    _run_and_summarise(s, address=address, resume=resume, overwrite=overwrite, quiet=quiet)


@app.command()
def resume(
    name: Annotated[str, typer.Argument(help="Name of the sweep to finish.")],
    store: StoreOpt = None,
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster: auto or HOST:PORT.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Finish an interrupted sweep with the spec it was started with."""
    from sweep.spec import parse_spec

    st = _store(store)
    meta = st.read_meta(name)
    s = parse_spec(meta["spec"], source=f"{st.sweep_dir(name)}/sweep.json")
    s = s.model_copy(update={"store": str(st.root)})
    _run_and_summarise(s, address=address, resume=True, overwrite=False, quiet=quiet)


def _run_and_summarise(spec, *, address, resume, overwrite, quiet) -> None:
    from sweep.launcher import run_sweep
    from sweep.summary import print_summary

    outcome = run_sweep(spec, address=address, resume=resume, overwrite=overwrite, show_progress=not quiet)
    print_summary(spec, outcome)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="A SELECT over the tables `trials` and `curves`.")],
    store: StoreOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """SQL over the store (DuckDB, read-only, confined to the store)."""
    from sweep.query import run_query

    if fmt not in ("table", "csv", "json"):
        raise SweepError(f"--format must be one of table, csv, json; got {fmt!r}")
    st = _store(store)
    if not st.root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(st.root)!r} (not found)")
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


@app.command()
def heatmap(
    sweep: SweepOpt = None,
    store: StoreOpt = None,
    metric: Annotated[str, typer.Option("--metric")] = "asr",
    x: Annotated[str, typer.Option("--x")] = "C",
    y: Annotated[str, typer.Option("--y")] = "gamma",
    facet: Annotated[Optional[str], typer.Option("--facet", help="One panel per value (default poison_rate; 'none' for one panel).")] = "poison_rate",
    agg: Annotated[str, typer.Option("--agg", help="mean, worst or best over seeds and hidden axes.")] = "mean",
    where: Annotated[Optional[str], typer.Option("--where", help='Filter rows, e.g. "trigger_size = 3".')] = None,
    out: Annotated[Path, typer.Option("--out", help="HTML file (plotly.js embedded: opens offline).")] = Path("heatmap.html"),
) -> None:
    """A heatmap of a metric over two axes, one panel per facet value."""
    from analysis.heatmap import heatmap_info, render_heatmap
    from analysis.load import load

    st = _store(store)
    name = pick_sweep(st, sweep)
    df = load(st, name, where)
    facet = None if facet in (None, "", "none") else facet
    info = heatmap_info(df, x=x, y=y, metric=metric, facet=facet, agg=agg)
    fig = render_heatmap(info, title=f"{name}: {agg} {metric}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(out, include_plotlyjs=True, full_html=True)
    typer.echo(f"wrote {out} ({len(info.panels)} panel(s), {len(info.x_values)}x{len(info.y_values)} cells)")


@app.command()
def select(
    sweep: SweepOpt = None,
    store: StoreOpt = None,
    objective: Annotated[str, typer.Option("--objective", help="asr, slope or worst_asr.")] = "asr",
    clean_tolerance: Annotated[float, typer.Option("--clean-tolerance")] = 0.01,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The robust configuration: lowest objective among those within the clean-accuracy tolerance."""
    from analysis.load import load
    from analysis.select import select_robust

    st = _store(store)
    name = pick_sweep(st, sweep)
    sel = select_robust(load(st, name), clean_tolerance=clean_tolerance, objective=objective)
    if as_json:
        typer.echo(json.dumps({"sweep": name, **sel.as_dict()}, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name}: robust choice by {objective}")
    table.add_column("")
    table.add_column("value")
    for k, v in sel.choice.items():
        table.add_row(k, str(v))
    for k, m in sel.metrics.items():
        std = f" ± {m['std']:.3f}" if m["std"] is not None else ""
        table.add_row(k, f"{m['mean']:.3f}{std} (n={m['n']})")
    console = Console(width=120)
    console.print(table)
    console.print(sel.reason)


@app.command("ls")
def ls_(store: StoreOpt = None) -> None:
    """The sweeps in a store: results, status counts and dates."""
    st = _store(store)
    if not st.root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(st.root)!r} (not found)")
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("sweep", "status", "results", "ok", "error", "expected", "created", "wall s"):
        table.add_column(col)
    for name in st.sweeps():
        meta = st.read_meta(name)
        df = st.read_table("trials", name)
        counts = df["status"].value_counts().to_dict() if not df.empty else {}
        table.add_row(
            name, str(meta.get("status", "?")), str(len(df)), str(counts.get("ok", 0)),
            str(counts.get("error", 0)), str(meta.get("n_results", "?")),
            str(meta.get("created_at", ""))[:19], str(meta.get("wall_seconds", "")),
        )
    Console(width=160).print(table)


def main() -> None:
    try:
        app(standalone_mode=False)
    except SweepError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as err:
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
