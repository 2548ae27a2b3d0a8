"""The option vocabulary every command shares, and the store/sweep look-ups behind it.

One name, one meaning: ``--store FOLDER`` (the result store), ``--sweep NAME`` (repeatable where a
command can take several sweeps), ``--where SQL`` (a SQL condition on the results), ``--metric``
(the metric shown or minimised), ``--seed`` (a result's seed, as in the spec's ``seeds``),
``--out FILE``, ``--format``. Flags take no value (``--quiet``, not ``--quiet true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from backdoor_sweep.errors import SweepError

if TYPE_CHECKING:
    from sweep.store import Store

#: the store a command reads when no --store is given (and a spec names none)
DEFAULT_STORE = "results"

StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", metavar="FOLDER", help="Result store folder (default: ./results)."),
]
SpecStoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        metavar="FOLDER",
        help="Result store folder (default: the spec's `store`, else ./results).",
    ),
]
SweepOpt = Annotated[
    str | None,
    typer.Option(
        "--sweep", metavar="NAME", help="Sweep to use (default: the newest sweep in the store)."
    ),
]
SweepsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sweep",
        metavar="NAME",
        help="Sweep to include; repeat for several (default: every sweep in the store).",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        metavar="ADDRESS",
        help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start Ray in-process).",
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", metavar="", help="No progress output (the summary still prints).")
]
CleanToleranceOpt = Annotated[
    float,
    typer.Option(
        "--clean-tolerance",
        metavar="FLOAT",
        help="Accurate: clean accuracy within this of the best (the others are not chosen, and "
        "are grey in figures).",
    ),
]


def where_option(example: str = "trigger_size = 3", what: str = "Keep the results") -> typer.Option:
    """``--where SQL``: a SQL condition on the store's columns (the same language as `query`)."""
    return typer.Option(
        "--where", metavar="SQL", help=f'{what} where this SQL holds, e.g. "{example}".'
    )


def out_option(what: str) -> typer.Option:
    return typer.Option("--out", metavar="FILE", help=what)


def flag(name: str, help: str) -> typer.Option:
    """A flag: present or absent, shown without a value in the help."""
    return typer.Option(name, metavar="", help=help)


def store_of(store: Path | None) -> Store:
    from sweep.store import Store

    return Store(store if store is not None else DEFAULT_STORE)


def existing_store(store: Path | None) -> Store:
    """The store, which must be an existing folder (a reader never creates one)."""
    st = store_of(store)
    if not st.root.is_dir():
        raise SweepError(f"--store must be an existing folder; got {str(st.root)!r} (not found)")
    return st


def pick_sweep(store: Store, sweep: str | None) -> str:
    """The named sweep, or the most recently created one in the store."""
    if sweep is not None:
        store.read_meta(sweep)  # a one-line error naming the sweeps there are
        return sweep
    names = store.sweeps()
    if not names:
        raise SweepError(
            f"--store must hold at least one sweep; {store.root} has none (run `backdoor-sweep run` first)"
        )
    return max(names, key=lambda n: store.read_meta(n).get("created_at", ""))


def pick_sweeps(store: Store, sweeps: list[str] | None) -> list[str]:
    """The named sweeps (each checked, in the order given, once), or every sweep in the store."""
    if not sweeps:
        names = store.sweeps()
        if not names:
            pick_sweep(store, None)  # the one-line "has none" error
        return names
    return [pick_sweep(store, s) for s in dict.fromkeys(sweeps)]


def split_list(text: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None or blank -> None."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return items or None


def check_choice(option: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise SweepError(f"{option} must be one of {', '.join(allowed)}; got {value!r}")
    return value
