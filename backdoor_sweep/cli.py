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
    if sweep is not None:
        store.read_meta(sweep)
        return sweep
    names = store.sweeps()
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
    force: Annotated[bool, typer.Option("--force", help="Run more than 100,000 results.")] = False,
) -> None:
    """Run a sweep (the embedded default when no SPEC is given) and write the store."""
    from sweep.spec import check_result_count, load_spec, with_overrides

    if resume and overwrite:
        raise SweepError("--resume and --overwrite must not be given together; got both")
    s = load_spec(spec)
    if smoke:
        s = s.smoke()
    s = with_overrides(s, name=name, store=str(store) if store is not None else None)
    check_result_count(s, force=force)
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
    timeout: Annotated[
        float, typer.Option("--timeout", help="Stop the query after this many seconds.")
    ] = 60.0,
    memory_limit: Annotated[
        str, typer.Option("--memory-limit", help="Most memory DuckDB may use, e.g. 512MB, 4GB.")
    ] = "4GB",
) -> None:
    """SQL over the store (DuckDB, read-only, confined to the store, bounded in time and memory)."""
    from sweep.query import run_query

    if fmt not in ("table", "csv", "json"):
        raise SweepError(f"--format must be one of table, csv, json; got {fmt!r}")
    st = _store(store)
    if not st.root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(st.root)!r} (not found)")
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


FigureOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="FILE.html (self-contained, opens offline), .png, .pdf or .svg (plotly's static "
        "export in headless Chromium).",
    ),
]


def _figure_out(out: Path | None, default: str) -> Path:
    from analysis.static import check_figure_path

    return check_figure_path(out if out is not None else Path(default))


def _recommended(df, clean_tolerance: float) -> dict | None:
    """The verdict's configuration, or None when there is none to mark."""
    from analysis.verdict import verdict_info

    try:
        return verdict_info(df, clean_tolerance).recommended.choice
    except SweepError:
        return None


@app.command()
def heatmap(
    sweep: SweepOpt = None,
    store: StoreOpt = None,
    metric: Annotated[str, typer.Option("--metric", help="Metric column to map.")] = "asr",
    x: Annotated[
        str | None,
        typer.Option("--x", help="Column on x (default: the sweep's first learner axis)."),
    ] = None,
    y: Annotated[
        str | None,
        typer.Option("--y", help="Column on y (default: the sweep's next grid axis)."),
    ] = None,
    facet: Annotated[
        str | None,
        typer.Option(
            "--facet",
            help="One panel per value, comma-separated for a grid (e.g. poison_rate,trigger_size); "
            "'none' for one panel. Default: the sweep's attack axes.",
        ),
    ] = None,
    agg: Annotated[
        str, typer.Option("--agg", help="mean, worst or best over seeds and hidden axes.")
    ] = "mean",
    where: Annotated[
        str | None, typer.Option("--where", help='Filter rows, e.g. "trigger_size = 3".')
    ] = None,
    clean_tolerance: Annotated[
        float,
        typer.Option(
            "--clean-tolerance",
            help="Grey the cells whose clean accuracy is more than this below the best.",
        ),
    ] = 0.01,
    out: FigureOut = None,
) -> None:
    """A heatmap of a metric over two grid axes, one panel per attack setting.

    Without --x/--y/--facet the axes come from the sweep's grid; the recommended configuration is
    outlined, cells outside the clean-accuracy tolerance are grey.
    """
    from analysis.heatmap import default_axes, heatmap_info
    from analysis.heatmap_figure import render_heatmap
    from analysis.load import load
    from analysis.static import write_figure

    path = _figure_out(out, "heatmap.html")
    st = _store(store)
    name = pick_sweep(st, sweep)
    df = load(st, name, where)
    facets = None if facet is None else [f.strip() for f in facet.split(",") if f.strip()]
    if facets in (["none"], []):
        facets = []
    if x is None or y is None or facets is None:
        dx, dy, dfacets = default_axes(df)
        order = [a for a in (dx, dy, *dfacets) if a is not None]
        x = x or next((a for a in order if a != y), None)
        if x is None:
            raise SweepError(f"--x is needed: the sweep has no grid axis besides --y {y!r}")
        y = y or next((a for a in order if a != x), None)
        if facets is None:
            facets = [a for a in order if a not in (x, y)][:2]
    info = heatmap_info(
        df,
        x=x,
        y=y,
        metric=metric,
        facet=facets or None,
        agg=agg,
        clean_tolerance=clean_tolerance,
        mark=_recommended(df, clean_tolerance),
    )
    fig = render_heatmap(info)
    fig.update_layout(title_text=f"{name}: {fig.layout.title.text}")
    write_figure(fig, path)
    typer.echo(
        f"wrote {path} ({len(info.panels)} panel(s), {len(info.x_values)}x{len(info.y_values)} "
        f"cells; {info.aggregated_over})"
    )


@app.command()
def importance(
    sweep: SweepOpt = None,
    store: StoreOpt = None,
    metric: Annotated[
        str, typer.Option("--metric", help="Metrics, comma-separated.")
    ] = "asr,clean_acc",
    where: Annotated[
        str | None, typer.Option("--where", help='Filter rows first, e.g. "trigger_size = 3".')
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also draw it: FILE.html, .png, .pdf or .svg."),
    ] = None,
) -> None:
    """Which grid axis moves each metric most: main-effect share of its variance over the grid.

    The results' variance splits into one main effect per axis (the first-order term of a functional
    ANOVA, exact on the grid), their interactions and the spread between seeds.
    """
    from analysis.importance import importance_info, render_importance
    from analysis.load import load

    if out is not None:
        _figure_out(out, "importance.html")
    st = _store(store)
    name = pick_sweep(st, sweep)
    info = importance_info(
        load(st, name, where), [m.strip() for m in metric.split(",") if m.strip()]
    )
    for m in info.metrics:
        ranked = ", ".join(f"{a} {share:.0%}" for a, share in m.ranked())
        typer.echo(
            f"{m.metric}: {ranked}; interactions {m.interactions:.0%}; seeds {m.seeds:.0%} "
            f"({m.n_results} results, {m.n_cells} cells)"
        )
    for note in info.notes:
        typer.echo(f"note: {note}")
    if out is not None:
        from analysis.static import write_figure

        fig = render_importance(info)
        fig.update_layout(title_text=f"{name}: {fig.layout.title.text}")
        typer.echo(f"wrote {write_figure(fig, out)}")


@app.command()
def parallel(
    sweep: SweepOpt = None,
    store: StoreOpt = None,
    colour: Annotated[
        str, typer.Option("--colour", help="Colour the lines by this metric.")
    ] = "asr",
    metric: Annotated[
        str, typer.Option("--metric", help="Metric axes, comma-separated.")
    ] = "clean_acc,asr",
    where: Annotated[
        str | None, typer.Option("--where", help='Filter rows first, e.g. "trigger_size = 3".')
    ] = None,
    clean_tolerance: Annotated[
        float,
        typer.Option("--clean-tolerance", help="The 'accurate' axis: within this of the best."),
    ] = 0.01,
    out: FigureOut = None,
) -> None:
    """Parallel coordinates: every grid cell as a line through its axes and metrics."""
    from analysis.load import load
    from analysis.parallel import parallel_info, render_parallel
    from analysis.static import write_figure

    path = _figure_out(out, "parallel.html")
    st = _store(store)
    name = pick_sweep(st, sweep)
    info = parallel_info(
        load(st, name, where),
        [m.strip() for m in metric.split(",") if m.strip()],
        colour=colour,
        clean_tolerance=clean_tolerance,
    )
    fig = render_parallel(info)
    fig.update_layout(title_text=f"{name}: {fig.layout.title.text}")
    write_figure(fig, path)
    typer.echo(f"wrote {path} ({len(info.cells)} grid cells, {len(info.dimensions)} axes)")


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
    out: FigureOut = None,
) -> None:
    """Backdoor learning curves: loss on TS dashed, on TS+BT solid, a colour per poison rate."""
    from analysis.curves import curves_info, render_curves
    from analysis.load import load
    from analysis.select import choice_axes
    from analysis.static import write_figure

    out = _figure_out(out, "curves.html")
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
    trials = load(st, name, where) if where else trials
    info = curves_info(trials, load(st, name, table="curves"), panel_by=panel_by, colour_by=colour)
    fig = render_curves(info, title=f"{name}: backdoor learning curves (TS dashed, TS+BT solid)")
    write_figure(fig, out)
    typer.echo(
        f"wrote {out} ({len(info.panels)} panel(s), {len(info.colour_values)} {colour} value(s))"
    )


#: results one `explain` page shows at most (each is rebuilt by refitting)
MAX_EXPLAINED = 4


@app.command()
def explain(
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            help='Pick the result(s), e.g. "C = 10 AND gamma = 0.01" (attacked ones first, '
            "strongest attack first). Default: the recommended and the most vulnerable accurate "
            "configuration under the strongest attack, as in the report.",
        ),
    ] = None,
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
    (β = 0) model, then draws one self-contained page. Results under attack come first, the
    strongest attack swept first; unpoisoned ones only when --where matches nothing else.
    """
    from analysis.explain import default_rows, explain_info, pick_rows, rebuild, strongest_first
    from analysis.explain_page import explain_page
    from analysis.load import load

    if k < 1:
        raise SweepError(f"--k must be at least 1; got {k}")
    st = _store(store)
    name = pick_sweep(st, sweep)
    full = load(st, name)
    if where is None:
        if seed is not None:
            raise SweepError(
                "--seed needs --where (the default picks the first seed); got --seed alone"
            )
        rows, labels = default_rows(full)
        typer.echo(f"explaining the {' and the '.join(labels)} (pick others with --where)")
    else:
        rows = strongest_first(full, pick_rows(load(st, name, where), seed))
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
            footer=f"store {st.root.resolve()} · --where {where or '(default: the report’s picks)'}",
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
        ci += " (clipped to [0, 1])" if m.get("ci_clipped") else ""
        table.add_row(k, f"{m['mean']:.3f}{std}", str(m["n"]), ci)
    console = Console(width=120)
    console.print(table)
    console.print(sel.reason)


@app.command("ls")
def ls_(store: StoreOpt = None) -> None:
    """The sweeps in a store: state, results by status, size on disk and dates."""
    st = _store(store)
    if not st.root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(st.root)!r} (not found)")
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
    """One self-contained HTML report: the verdict, heatmaps, importance, curves, explanations."""
    from analysis.report import build_report

    st = _store(store)
    names = [pick_sweep(st, n) for n in sweep] if sweep else None
    path = build_report(st, names, out, clean_tolerance=clean_tolerance)
    typer.echo(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; {', '.join(names or st.sweeps())})"
    )


@app.command()
def verify(
    store: StoreOpt = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Repair what is found: delete temporaries, set bad files aside, rewrite parts "
            "with the sweep's schema (nothing is deleted but half-written files).",
        ),
    ] = False,
) -> None:
    """Check a store: foreign or corrupt files, schemas, duplicates, orphans, the plan; exit 2 if wrong."""
    from sweep.verify import format_report, verify_store

    st = _store(store)
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
