"""`explain` and `triggers`: pictures of samples — why a result is backdoored, what triggers look like."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backdoor_sweep.cli.app import app
from backdoor_sweep.cli.options import StoreOpt, SweepOpt, existing_store, out_option, pick_sweep
from backdoor_sweep.errors import SweepError

#: results one `explain` page shows at most (each is rebuilt by refitting)
MAX_EXPLAINED = 4


@app.command()
def explain(
    where: Annotated[
        str | None,
        typer.Option(
            "--where",
            metavar="SQL",
            help='Explain the results where this SQL holds, e.g. "C = 10 AND gamma = 0.01" '
            "(attacked ones first, strongest attack first). Default: the recommended and the most "
            "vulnerable accurate configuration under the strongest attack, as in the report.",
        ),
    ] = None,
    sweep: SweepOpt = None,
    store: StoreOpt = None,
    test_index: Annotated[
        int | None,
        typer.Option(
            "--test-index",
            metavar="INT",
            help="Index of the test sample to explain (default: the first not of the target class).",
        ),
    ] = None,
    k: Annotated[
        int, typer.Option("--k", metavar="INT", help="How many most influential training samples.")
    ] = 10,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            metavar="INT",
            help="Seed of the result, one of the spec's seeds (default: the first matched).",
        ),
    ] = None,
    out: Annotated[Path, out_option("HTML file (self-contained: opens offline).")] = Path(
        "explain.html"
    ),
) -> None:
    """Why a result is (not) backdoored: gradient maps, most influential training samples, dynamics.

    Rebuilds the matched result(s) from the sweep's spec — same seeds, same code — and its clean
    (β = 0) model, then draws one self-contained page. Results under attack come first, the
    strongest attack swept first; unpoisoned ones only when --where matches nothing else.
    """
    if k < 1:
        raise SweepError(f"--k must be at least 1; got {k}")
    st = existing_store(store)
    name = pick_sweep(st, sweep)
    from analysis.explain import default_rows, explain_info, pick_rows, rebuild, strongest_first
    from analysis.explain_page import explain_page
    from analysis.load import load

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
    shown = rows.head(MAX_EXPLAINED).to_dict("records")
    infos = []
    for i, r in enumerate(shown, 1):
        typer.echo(f"rebuilding result {i} of {len(shown)} ...")
        infos.append(explain_info(rebuild(st, name, r), sample=test_index, k=k))
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
            metavar="NAME",
            help="digits, mnist, fashion_mnist or cifar10 (default digits; image_folder needs --spec).",
        ),
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root",
            metavar="FOLDER",
            help="Folder with the dataset files (default $BACKDOOR_SWEEP_DATA, else ./data).",
        ),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec", metavar="SPEC", help="Use this spec's dataset and attack parameters."
        ),
    ] = None,
    out: Annotated[Path, out_option("FILE.png or FILE.html (self-contained).")] = Path(
        "triggers.png"
    ),
    images: Annotated[
        int, typer.Option("--images", metavar="INT", help="How many test images to show.")
    ] = 4,
    image_seed: Annotated[
        int,
        typer.Option("--image-seed", metavar="INT", help="Seed of the random pick of test images."),
    ] = 0,
) -> None:
    """A gallery: clean images, each trigger and each clean-label hardening, before sweeping them."""
    if spec is not None and dataset is not None:
        raise SweepError(
            "--dataset must not be given with --spec (the spec names its dataset); got both"
        )
    if out.suffix.lower() not in (".png", ".html", ".htm"):
        raise SweepError(f"--out must end in .png or .html; got {str(out)!r}")
    if dataset == "image_folder":
        raise SweepError(
            "--dataset image_folder needs its folder and image_size: pass --spec SPEC instead"
        )
    from analysis.gallery import gallery_info, write_gallery
    from sweep.spec import load_spec
    from trainables.data.datasets import DatasetSpec, load_dataset

    s = load_spec(spec) if spec is not None else None
    ds = s.dataset if s is not None else DatasetSpec(name=dataset or "digits")
    if data_root is not None:
        ds = DatasetSpec(**{**ds.model_dump(), "data_root": str(data_root)})

    def progress(done: int, total: int, label: str) -> None:
        typer.echo(f"triggers: {done + 1}/{total} {label}", err=True)

    info = gallery_info(load_dataset(ds), s, n_samples=images, seed=image_seed, progress=progress)
    write_gallery(info, out)
    typer.echo(f"wrote {out} ({len(info.row_labels)} rows x {len(info.sample_labels)} samples)")
    for note in info.skipped:
        typer.echo(f"not shown: {note}")
