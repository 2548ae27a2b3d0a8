"""The short summary printed at the end of `backdoor-sweep run`."""

from __future__ import annotations

import sys

from sweep.errors import SweepError


def print_summary(spec, outcome, stream=None) -> None:
    from analysis.load import load
    from analysis.select import select_robust

    out = stream or sys.stdout
    axes = " x ".join(f"{len(v)} {k}" for k, v in spec.grid.items()) or "1 configuration"
    print(f"sweep {spec.name}: {axes} x {len(spec.seeds)} seeds = {spec.n_results} results", file=out)
    print(
        f"  ran {outcome.n_ok + outcome.n_error} ({outcome.n_ok} ok, {outcome.n_error} error), "
        f"{outcome.n_skipped} already in the store; wall time {outcome.wall_seconds:.1f} s",
        file=out,
    )
    print(f"  store: {outcome.store.sweep_dir(spec.name)}", file=out)
    try:
        df = load(outcome.store, spec.name)
        sel = select_robust(df, clean_tolerance=0.01, objective="asr")
    except SweepError as err:
        print(f"  no robust choice: {err}", file=out)
        return
    print(f"  robust choice (lowest ASR within 0.01 of the best clean accuracy): {sel.reason}", file=out)
