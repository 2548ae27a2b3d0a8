"""`heatmap`, `importance`, `parallel` and `curves`: figures of one sweep.

A figure's ``--out`` may end in .html (self-contained, opens offline), .png, .pdf or .svg (plotly's
static export in headless Chromium).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backdoor_sweep.cli.app import app
from backdoor_sweep.cli.options import (
    CleanToleranceOpt,
    StoreOpt,
    SweepOpt,
    existing_store,
    out_option,
    pick_sweep,
    split_list,
    where_option,
)
from backdoor_sweep.errors import SweepError

FigureOut = Annotated[
    Path | None,
    out_option(
        "FILE.html (self-contained, opens offline), .png, .pdf or .svg (plotly's static export "
        "in headless Chromium)."
    ),
]
ColourOpt = Annotated[
    str, typer.Option("--colour", metavar="COLUMN", help="Colour by this column.")
]


def figure_path(out: Path | None, default: str) -> Path:
    """``--out`` (or the command's default file), checked before any work: a known suffix."""
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
    metric: Annotated[
        str, typer.Option("--metric", metavar="METRIC", help="Metric column to map.")
    ] = "asr",
    x: Annotated[
        str | None,
        typer.Option(
            "--x", metavar="AXIS", help="Column on x (default: the sweep's first learner axis)."
        ),
    ] = None,
    y: Annotated[
        str | None,
        typer.Option(
            "--y", metavar="AXIS", help="Column on y (default: the sweep's next grid axis)."
        ),
    ] = None,
    facet: Annotated[
        str | None,
        typer.Option(
            "--facet",
            metavar="A,B",
            help="One panel per value, comma-separated for a grid (e.g. poison_rate,trigger_size); "
            "'none' for one panel. Default: the sweep's attack axes.",
        ),
    ] = None,
    agg: Annotated[
        str,
        typer.Option(
            "--agg", metavar="AGG", help="mean, worst or best over seeds and hidden axes."
        ),
    ] = "mean",
    where: Annotated[str | None, where_option()] = None,
    clean_tolerance: CleanToleranceOpt = 0.01,
    out: FigureOut = None,
) -> None:
    """A heatmap of a metric over two grid axes, one panel per attack setting.

    Without --x/--y/--facet the axes come from the sweep's grid; the recommended configuration is
    outlined, cells outside the clean-accuracy tolerance are grey.
    """
    path = figure_path(out, "heatmap.html")
    st = existing_store(store)
    name = pick_sweep(st, sweep)
    from analysis.heatmap import default_axes, heatmap_info
    from analysis.heatmap_figure import render_heatmap
    from analysis.load import load
    from analysis.search_views import decision_rows, is_grid, render_scatter, scatter_info
    from analysis.static import write_figure

    df = load(st, name, where)
    if not (where and "stage" in where):  # a slope screen's stage one, unless asked for
        df = decision_rows(df)
    facets = None if facet is None else split_list(facet) or []
    if facets == ["none"]:
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
    if x in df.columns and y in df.columns and not is_grid(df, x, y):
        shown = f"worst_{metric}" if agg == "worst" else metric  # worst over the attacks
        write_figure(render_scatter(scatter_info(df, x, y, shown), title=f"{name}: {shown}"), path)
        typer.echo(f"wrote {path} (a scatter: the sampled {x} and {y} are not a grid)")
        return
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
        str, typer.Option("--metric", metavar="A,B", help="Metrics, comma-separated.")
    ] = "asr,clean_acc",
    where: Annotated[str | None, where_option()] = None,
    out: Annotated[Path | None, out_option("Also draw it: FILE.html, .png, .pdf or .svg.")] = None,
) -> None:
    """Which grid axis moves each metric most: main-effect share of its variance over the grid.

    The results' variance splits into one main effect per axis (the first-order term of a functional
    ANOVA, exact on the grid), their interactions and the spread between seeds.
    """
    if out is not None:
        figure_path(out, "importance.html")
    st = existing_store(store)
    name = pick_sweep(st, sweep)
    from analysis.importance import importance_info, render_importance
    from analysis.load import load

    info = importance_info(load(st, name, where), split_list(metric) or [])
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
    colour: ColourOpt = "asr",
    metric: Annotated[
        str, typer.Option("--metric", metavar="A,B", help="Metric axes, comma-separated.")
    ] = "clean_acc,asr",
    where: Annotated[str | None, where_option()] = None,
    clean_tolerance: CleanToleranceOpt = 0.01,
    out: FigureOut = None,
) -> None:
    """Parallel coordinates: every grid cell as a line through its axes and metrics."""
    path = figure_path(out, "parallel.html")
    st = existing_store(store)
    name = pick_sweep(st, sweep)
    from analysis.load import load
    from analysis.parallel import parallel_info, render_parallel
    from analysis.static import write_figure

    info = parallel_info(
        load(st, name, where),
        split_list(metric) or [],
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
    where: Annotated[str | None, where_option("C in (0.01, 10)", "Draw the configurations")] = None,
    panels: Annotated[
        str | None,
        typer.Option(
            "--panels",
            metavar="A,B",
            help="Panel axes, comma-separated (default: the varying learner/defence parameters).",
        ),
    ] = None,
    colour: ColourOpt = "poison_rate",
    out: FigureOut = None,
) -> None:
    """Backdoor learning curves: loss on TS dashed, on TS+BT solid, a colour per poison rate."""
    path = figure_path(out, "curves.html")
    st = existing_store(store)
    name = pick_sweep(st, sweep)
    if not st.parts(name, "curves"):
        raise SweepError(
            f"sweep {name!r} has no learning curves; run it with `curves: {{enabled: true}}` in its spec"
        )
    from analysis.curves import curves_info, render_curves
    from analysis.load import load
    from analysis.select import choice_axes
    from analysis.static import write_figure

    trials = load(st, name)
    # panels name every learner parameter the sweep varies, even one --where pins to one value
    panel_by = split_list(panels) or choice_axes(trials)
    trials = load(st, name, where) if where else trials
    info = curves_info(trials, load(st, name, table="curves"), panel_by=panel_by, colour_by=colour)
    fig = render_curves(info, title=f"{name}: backdoor learning curves (TS dashed, TS+BT solid)")
    write_figure(fig, path)
    typer.echo(
        f"wrote {path} ({len(info.panels)} panel(s), {len(info.colour_values)} {colour} value(s))"
    )
