"""`run` and `resume`: a sweep from a spec, and the end of an interrupted one.

The plan (results, trials, store) is printed when the run starts. Ctrl-C or ``kill PID``
(SIGTERM) stop the sweep gracefully: finished trials are in the store, running ones are dropped,
and the last line is a `resume` command that works when pasted — it names the store by its
absolute path and the cluster address, if one was given. Exit code 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from backdoor_sweep.cli.app import Stop, app
from backdoor_sweep.cli.options import (
    AddressOpt,
    QuietOpt,
    SpecStoreOpt,
    StoreOpt,
    existing_store,
    flag,
)
from backdoor_sweep.errors import SweepError

if TYPE_CHECKING:
    from sweep.spec import Spec
    from sweep.store import Store


@app.command()
def run(
    spec: Annotated[
        Path | None,
        typer.Argument(
            metavar="SPEC",
            help="Sweep spec (YAML). Default: the embedded search_spaces/digits_svm_rbf.yaml.",
        ),
    ] = None,
    store: SpecStoreOpt = None,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="NAME", help="Sweep name (default: the spec's `name`)."),
    ] = None,
    address: AddressOpt = None,
    smoke: Annotated[
        bool, flag("--smoke", "Tiny grid: the first two values of each axis, the first seed.")
    ] = False,
    resume: Annotated[
        bool, flag("--resume", "Finish a sweep of this name that was interrupted.")
    ] = False,
    overwrite: Annotated[
        bool,
        flag("--overwrite", "Replace a sweep of this name (once the new run is ready)."),
    ] = False,
    quiet: QuietOpt = False,
    force: Annotated[bool, flag("--force", "Run more than 100,000 results.")] = False,
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
    run_and_summarise(s, address=address, resume=resume, overwrite=overwrite, quiet=quiet)


@app.command()
def resume(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the sweep to finish.")],
    store: StoreOpt = None,
    address: AddressOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Finish an interrupted sweep with the spec it was started with (read from the store)."""
    from sweep.spec import parse_spec
    from sweep.store import Store

    st = existing_store(store)
    meta = st.read_meta(name)
    s = parse_spec(meta["spec"], source=f"{st.sweep_dir(name)}/sweep.json")
    # the spec as it was started (its fingerprint unchanged), the store where it is now
    run_and_summarise(
        s, address=address, resume=True, overwrite=False, quiet=quiet, store=Store(st.root)
    )


def run_and_summarise(
    spec: Spec,
    *,
    address: str | None,
    resume: bool,
    overwrite: bool,
    quiet: bool,
    store: Store | None = None,
) -> None:
    """Run, print the plan first and the summary last; a stop ends with the resume hint."""
    from backdoor_sweep.summary import print_plan, print_summary
    from sweep.launcher import run_sweep
    from sweep.store import Store

    st = store if store is not None else Store(spec.store)
    try:
        outcome = run_sweep(
            spec,
            address=address,
            resume=resume,
            overwrite=overwrite,
            show_progress=not quiet,
            store=st,
            on_start=lambda plan: print_plan(spec, plan),
        )
    except KeyboardInterrupt:  # a second Ctrl-C, or a stop before Tune ran
        sys.stdout.flush()
        _stopped(spec.name, st, address)
    print_summary(spec, outcome, choice=outcome.complete)
    if not outcome.complete:
        _stopped(spec.name, st, address)


def _stopped(name: str, store: Store, address: str | None) -> None:
    """Say what a stopped run left and how to finish it; exit 143 after SIGTERM, else 130."""
    Stop.reported = True
    if store.exists(name) and store.read_meta(name).get("status") != "finished":
        from sweep.claim import resume_command

        hint = (
            f"sweep {name!r} is incomplete; finish it with: {resume_command(name, store, address)}"
        )
    elif store.exists(name):
        hint = f"stopped before sweep {name!r} was changed (run the same command again)"
    else:
        hint = f"stopped before sweep {name!r} was stored (run the same command again)"
    typer.echo(hint, err=True)
    raise typer.Exit(code=Stop.exit_code())
