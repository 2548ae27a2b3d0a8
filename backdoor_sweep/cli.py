"""The `backdoor-sweep` command line.

Every command turns a `SweepError` into one line on stderr and exit code 2; anything else is a
bug and keeps its traceback. Heavy imports (Ray, torch, plotly) happen inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from backdoor_sweep.errors import SweepError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Sweeps of backdoor-poisoning experiments on Ray Tune, and robust hyperparameter choice.",
)

StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Result store folder (default: the spec's, ./results)."),
]
SweepOpt = Annotated[
    str | None, typer.Option("--sweep", help="Sweep name (default: the only or newest sweep).")
]


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
        raise SweepError(
            f"--store must hold at least one sweep; {store.root} has none (run `backdoor-sweep run` first)"
        )
    return max(names, key=lambda n: store.read_meta(n).get("created_at", ""))


@app.command()
def run(
    spec: Annotated[
        Path | None,
        typer.Argument(help="Sweep spec (YAML). Default: search_spaces/digits_svm_rbf.yaml."),
    ] = None,
    store: StoreOpt = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Sweep name (default: the spec's).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="Ray cluster: auto or HOST:PORT. Default: start Ray in-process."
        ),
    ] = None,
    smoke: Annotated[
        bool, typer.Option("--smoke", help="Tiny grid: first two values per axis, first seed.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish a sweep of this name that was interrupted.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a sweep of this name.")
    ] = False,
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
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster: auto or HOST:PORT.")
    ] = None,
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
    from backdoor_sweep.summary import print_summary
    from sweep.launcher import run_sweep

    outcome = run_sweep(
        spec, address=address, resume=resume, overwrite=overwrite, show_progress=not quiet
    )
    print_summary(spec, outcome)
    if not outcome.complete:  # interrupted (Ctrl-C): say how to finish, exit non-zero
        typer.echo(
            f"sweep {spec.name!r} is incomplete; finish it with `backdoor-sweep resume {spec.name}`",
            err=True,
        )
        raise typer.Exit(code=1)


@app.command()
def query(
    sql: Annotated[
        str, typer.Argument(help="A SELECT over the tables `trials`, `curves` and `dynamics`.")
    ],
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
    facet: Annotated[
        str | None,
        typer.Option(
            "--facet",
            help="One panel per value (default poison_rate; comma-separated for a grid, e.g. poison_rate,trigger_size; 'none' for one panel).",
        ),
    ] = "poison_rate",
    agg: Annotated[
        str, typer.Option("--agg", help="mean, worst or best over seeds and hidden axes.")
    ] = "mean",
    where: Annotated[
        str | None, typer.Option("--where", help='Filter rows, e.g. "trigger_size = 3".')
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="HTML file (plotly.js embedded: opens offline).")
    ] = Path("heatmap.html"),
) -> None:
    """A heatmap of a metric over two axes, one panel per facet value."""
    from analysis.heatmap import heatmap_info, render_heatmap
    from analysis.load import load

    st = _store(store)
    name = pick_sweep(st, sweep)
    df = load(st, name, where)
    facet = (
        None if facet in (None, "", "none") else [f.strip() for f in facet.split(",") if f.strip()]
    )
    info = heatmap_info(df, x=x, y=y, metric=metric, facet=facet, agg=agg)
    fig = render_heatmap(info, title=f"{name}: {agg} {metric}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(out, include_plotlyjs=True, full_html=True)
    typer.echo(
        f"wrote {out} ({len(info.panels)} panel(s), {len(info.x_values)}x{len(info.y_values)} cells)"
    )


@app.command()
def curves(
    sweep: SweepOpt = None,
    store: StoreOpt = None,
    where: Annotated[
        str | None, typer.Option("--where", help='Pick configurations, e.g. "C in (0.01, 10)".')
    ] = None,
    panels: Annotated[
        str | None,
        typer.Option(
            "--panels",
            help="Panel axes, comma-separated (default: the varying learner/defence parameters).",
        ),
    ] = None,
    colour: Annotated[
        str, typer.Option("--colour", help="One colour per value of this column.")
    ] = "poison_rate",
    out: Annotated[
        Path, typer.Option("--out", help="HTML file (plotly.js embedded: opens offline).")
    ] = Path("curves.html"),
) -> None:
    """Backdoor learning curves: loss on TS dashed, on TS+BT solid, a colour per poison rate."""
    from analysis.curves import curves_info, render_curves
    from analysis.load import filter_rows, load
    from analysis.select import choice_axes

    st = _store(store)
    name = pick_sweep(st, sweep)
    if not st.parts(name, "curves"):
        raise SweepError(
            f"sweep {name!r} has no learning curves; run it with `curves: {{enabled: true}}` in its spec"
        )
    trials = load(st, name)
    # panels name every learner parameter the sweep varies, even one --where pins to one value
    panel_by = (
        [p.strip() for p in panels.split(",") if p.strip()] if panels else choice_axes(trials)
    )
    trials = filter_rows(trials, where) if where else trials
    info = curves_info(trials, load(st, name, table="curves"), panel_by=panel_by, colour_by=colour)
    fig = render_curves(info, title=f"{name}: backdoor learning curves (TS dashed, TS+BT solid)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(out, include_plotlyjs=True, full_html=True)
    typer.echo(
        f"wrote {out} ({len(info.panels)} panel(s), {len(info.colour_values)} {colour} value(s))"
    )


#: results one `explain` page shows at most (each is rebuilt by refitting)
MAX_EXPLAINED = 4


@app.command()
def explain(
    where: Annotated[
        str, typer.Option("--where", help='Pick the result(s), e.g. "C = 10 AND gamma = 0.01".')
    ],
    sweep: SweepOpt = None,
    store: StoreOpt = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample", help="Test sample index (default: the first not of the target class)."
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="How many most influential training samples.")] = 10,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the result (default: the first matched).")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="HTML file (self-contained: opens offline).")
    ] = Path("explain.html"),
) -> None:
    """Why a result is (not) backdoored: gradient maps, most influential training samples, dynamics.

    Rebuilds the matched result(s) from the sweep's spec — same seeds, same code — and its clean
    (β = 0) model, then draws one self-contained page.
    """
    from analysis.explain import explain_info, pick_rows, rebuild
    from analysis.explain_page import explain_page
    from analysis.load import load

    if k < 1:
        raise SweepError(f"--k must be at least 1; got {k}")
    st = _store(store)
    name = pick_sweep(st, sweep)
    rows = pick_rows(load(st, name, where), seed)
    if rows.empty:
        raise SweepError(
            f"--where must match a successful result of sweep {name!r}"
            + (f" with seed {seed}" if seed is not None else "")
            + f"; got {where!r}"
        )
    infos = [
        explain_info(rebuild(st, name, r), sample=sample, k=k)
        for r in rows.head(MAX_EXPLAINED).to_dict("records")
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        explain_page(
            infos,
            f"backdoor-sweep explain: {name}",
            footer=f"store {st.root.resolve()} · --where {where}",
        ),
        encoding="utf-8",
    )
    more = (
        f"; {len(rows) - MAX_EXPLAINED} more matched (narrow --where)"
        if len(rows) > MAX_EXPLAINED
        else ""
    )
    typer.echo(f"wrote {out} ({len(infos)} result(s) of {name}{more})")
    for info in infos:
        typer.echo(
            f"{info.title}: influential_poison_frac {info.influential_poison_frac:.3f} (top-{info.k})"
        )


@app.command()
def triggers(
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="digits, mnist, fashion_mnist or cifar10 (default digits; image_folder needs --spec).",
        ),
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root",
            help="Folder with the dataset files (default $BACKDOOR_SWEEP_DATA, else ./data).",
        ),
    ] = None,
    spec: Annotated[
        Path | None, typer.Option("--spec", help="Use this spec's dataset and attack parameters.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="FILE.png or FILE.html (self-contained).")
    ] = Path("triggers.png"),
    samples: Annotated[int, typer.Option("--samples", help="How many test images to show.")] = 4,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """A gallery: clean images, each trigger and each clean-label hardening, before sweeping them."""
    from analysis.gallery import gallery_info, write_gallery
    from sweep.spec import load_spec
    from trainables.data.datasets import DatasetSpec, load_dataset

    if spec is not None and dataset is not None:
        raise SweepError(
            "--dataset must not be given with --spec (the spec names its dataset); got both"
        )
    if out.suffix.lower() not in (".png", ".html", ".htm"):
        raise SweepError(f"--out must end in .png or .html; got {str(out)!r}")
    s = load_spec(spec) if spec is not None else None
    ds = s.dataset if s is not None else DatasetSpec(name=dataset or "digits")
    if dataset == "image_folder":
        raise SweepError(
            "--dataset image_folder needs its folder and image_size: pass --spec SPEC instead"
        )
    if data_root is not None:
        ds = DatasetSpec(**{**ds.model_dump(), "data_root": str(data_root)})
    info = gallery_info(load_dataset(ds), s, n_samples=samples, seed=seed)
    write_gallery(info, out)
    typer.echo(f"wrote {out} ({len(info.row_labels)} rows x {len(info.sample_labels)} samples)")
    for note in info.skipped:
        typer.echo(f"not shown: {note}")


@app.command()
def select(
    sweep: SweepOpt = None,
    store: StoreOpt = None,
    objective: Annotated[str, typer.Option("--objective", help="asr, slope or worst_asr.")] = "asr",
    clean_tolerance: Annotated[
        float,
        typer.Option("--clean-tolerance", help="Eligible: clean accuracy within this of the best."),
    ] = 0.01,
    axes: Annotated[
        str | None,
        typer.Option(
            "--axes",
            help="Choice axes, comma-separated (default: the varying learner/defence parameters).",
        ),
    ] = None,
    where: Annotated[
        str | None, typer.Option("--where", help='Filter rows first, e.g. "trigger_size = 3".')
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Machine-readable JSON (choice, metrics, reason, every candidate)."
        ),
    ] = False,
) -> None:
    """The robust configuration: lowest objective among those within the clean-accuracy tolerance."""
    from analysis.load import load
    from analysis.select import select_robust

    st = _store(store)
    name = pick_sweep(st, sweep)
    chosen_axes = [a.strip() for a in axes.split(",") if a.strip()] if axes else None
    sel = select_robust(
        load(st, name, where),
        clean_tolerance=clean_tolerance,
        objective=objective,
        axes=chosen_axes,
    )
    if as_json:
        typer.echo(sel.to_json(sweep=name))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name}: robust choice by {objective}")
    for col in ("", "value", "seeds", "95% interval"):
        table.add_column(col)
    for k, v in sel.choice.items():
        table.add_row(k, str(v), "", "")
    for k, m in sel.metrics.items():
        std = f" ± {m['std']:.3f}" if m["std"] is not None else ""
        ci = f"{m['ci_low']:.3f} – {m['ci_high']:.3f}" if m["ci_low"] is not None else "n/a"
        table.add_row(k, f"{m['mean']:.3f}{std}", str(m["n"]), ci)
    console = Console(width=120)
    console.print(table)
    console.print(sel.reason)


@app.command("ls")
def ls_(store: StoreOpt = None) -> None:
    """The sweeps in a store: size on disk, results by status and dates."""
    st = _store(store)
    if not st.root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(st.root)!r} (not found)")
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
    for name in st.sweeps():
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
def report(
    sweep: Annotated[
        list[str] | None,
        typer.Option(
            "--sweep",
            help="Sweep to include (repeat for several; default: every sweep in the store).",
        ),
    ] = None,
    store: StoreOpt = None,
    out: Annotated[
        Path, typer.Option("--out", help="HTML file (self-contained: opens offline).")
    ] = Path("report.html"),
    clean_tolerance: Annotated[float, typer.Option("--clean-tolerance")] = 0.01,
) -> None:
    """One self-contained HTML report: what was swept, heatmaps, curves, Pareto front, robust choice."""
    from analysis.report import build_report

    st = _store(store)
    names = [pick_sweep(st, n) for n in sweep] if sweep else None
    path = build_report(st, names, out, clean_tolerance=clean_tolerance)
    typer.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; {', '.join(names or st.sweeps())})"
    )


@app.command()
def verify(store: StoreOpt = None) -> None:
    """Check a store: foreign or corrupt files, schemas, duplicates, orphans, the plan; exit 2 if wrong."""
    from sweep.verify import format_report, verify_store

    report = verify_store(_store(store))
    for line in format_report(report):
        typer.echo(line)
    if not report.ok:
        raise SweepError(
            f"store {report.root} has {len(report.problems)} problem(s) (listed above)"
        )


# the team service's commands: `serve` and `token add|list|revoke`
from backdoor_sweep.service.commands import register as _register_service  # noqa: E402

_register_service(app)


def main() -> None:
    import signal

    # `kill PID` stops a sweep like Ctrl-C: Tune ends gracefully, Ray shuts down, resume later
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(code) from a command
            sys.exit(code)
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
