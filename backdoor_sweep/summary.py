"""What `backdoor-sweep run` prints: the plan when it starts, the summary when it ends."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from backdoor_sweep.errors import SweepError

if TYPE_CHECKING:
    from sweep.launcher import SweepOutcome, SweepStart
    from sweep.spec import Spec


def describe_grid(spec: Spec) -> str:
    """``2 C x 2 gamma x 2 seeds = 8 results``."""
    axes = (
        " x ".join(
            f"{len(v)} {k}" if isinstance(v, list) else f"{k} {v.describe()}"
            for k, v in spec.grid.items()
        )
        or "1 configuration"
    )
    seeds = f"{len(spec.seeds)} seed" + ("s" if len(spec.seeds) != 1 else "")
    size = f"{spec.n_results} results"
    if not spec.search.is_default:
        what = spec.search.sampler or "grid"
        size = f"at most {size} ({what}, strategy {spec.search.strategy})"
    return f"{axes} x {seeds} = {size}"


def print_plan(spec: Spec, plan: SweepStart, stream: TextIO | None = None) -> None:
    """What the run is about to do, before any slow step: a person sees at once how big it is and
    where it writes (and, resumed, how much is already done). A search says its budget: how many
    configurations it looks at, and at most how many trials and results that costs."""
    out = stream or sys.stdout
    searched = plan.n_configurations
    bound = "" if searched is None else "at most "
    print(f"sweep {spec.name}: {describe_grid(spec)} in {bound}{plan.n_trials} trials", file=out)
    if searched is not None:
        print(f"  {searched} configurations searched ({_search_words(spec)})", file=out)
    if plan.n_stored:
        print(
            f"  {plan.n_stored} results already in the store; {bound}{plan.n_todo} trials to run",
            file=out,
        )
    if plan.replaces:
        print("  replaces the stored sweep of this name once the new run is ready", file=out)
    print(f"  store: {plan.store.sweep_dir(spec.name).resolve()}", file=out, flush=True)


def _search_words(spec: Spec) -> str:
    """``optuna_tpe`` or ``slope screen: stage two on at most 3 of them``."""
    search = spec.search
    if search.strategy != "slope_screen":
        return search.sampler or search.algorithm
    from sweep.search import DEFAULT_KEEP

    if search.keep_fraction is not None:
        kept = f"{search.keep_fraction:g} of the accurate ones"
    else:
        kept = f"at most {search.keep if search.keep is not None else DEFAULT_KEEP} of them"
    return f"slope screen: the full attack grid on {kept}"


def print_summary(
    spec: Spec, outcome: SweepOutcome, stream: TextIO | None = None, choice: bool = True
) -> None:
    """Counts and wall time; with ``choice``, the robust choices the results support."""
    out = stream or sys.stdout
    state = "finished" if outcome.complete else "stopped"
    stopped = getattr(outcome, "n_stopped", 0)
    ran = outcome.n_ok + outcome.n_error + stopped
    counts = f"{outcome.n_ok} ok, {outcome.n_error} error" + (
        f", {stopped} stopped early by the scheduler" if stopped else ""
    )
    print(
        f"sweep {spec.name} {state}: ran {ran} ({counts}), "
        f"{outcome.n_skipped} already in the store; wall time {outcome.wall_seconds:.1f} s",
        file=out,
    )
    print(f"  store: {outcome.store.sweep_dir(spec.name).resolve()}", file=out)
    if not choice:
        return
    from analysis.load import load

    try:
        df = load(outcome.store, spec.name)
    except SweepError as err:
        print(f"  no robust choice: {err}", file=out)
        return
    if not spec.search.is_default:
        from analysis.search_views import search_summary_lines

        for line in search_summary_lines(outcome.store.read_meta(spec.name)):
            print(line, file=out)
    if not print_choice(df, "asr", out):
        return
    screened = spec.search.strategy == "slope_screen"  # its screen lines said what the slope did
    if "slope" in df.columns and df["slope"].notna().any() and not screened:
        print_slope_summary(df, list(spec.grid), out)


def print_slope_summary(df, axes: list[str], out) -> None:
    """Spearman correlation of slope and ASR over the grid per poison rate; the choice by slope."""
    import pandas as pd

    ok = df[df["status"] == "ok"] if "status" in df else df
    ok = ok.assign(slope=pd.to_numeric(ok["slope"], errors="coerce"))
    rates = sorted(ok["poison_rate"].dropna().unique()) if "poison_rate" in ok else [None]
    grid = [c for c in axes if c != "poison_rate" and c in ok.columns]
    for rate in rates:
        if rate is not None and rate == 0:
            continue  # no poison: every slope is 0
        part = ok if rate is None else ok[ok["poison_rate"] == rate]
        # one point per grid cell (the seeds averaged)
        cols = ["slope", "asr", "clean_acc"]
        cells = (part.groupby(grid, dropna=False)[cols].mean() if grid else part[cols]).dropna()
        label = "all results" if rate is None else f"poison_rate={rate:g}"
        accurate = (
            cells[cells["clean_acc"] >= cells["clean_acc"].max() - 0.01] if len(cells) else cells
        )
        print(
            f"  Spearman(slope, ASR) at {label}: {_spearman(cells)} over the grid; "
            f"{_spearman(accurate)} among the cells within 0.01 of the best clean accuracy",
            file=out,
        )
    print_choice(df, "slope", out)


def print_choice(df, objective: str, out) -> bool:
    """Print the robust choice by ``objective`` (tolerance 0.01); False when there is none."""
    from analysis.select import select_robust

    by = "" if objective == "asr" else f" by {objective}"
    try:
        sel = select_robust(df, clean_tolerance=0.01, objective=objective)
    except SweepError as err:
        print(f"  no robust choice{by}: {err}", file=out)
        return False
    what = "ASR" if objective == "asr" else objective
    print(
        f"  robust choice{by} (lowest {what} within 0.01 of the best clean accuracy): {sel.reason}",
        file=out,
    )
    return True


def _spearman(cells) -> str:
    """'ρ (n points)', or n/a when there are too few points or a column is constant."""
    from scipy.stats import spearmanr

    if len(cells) < 3 or cells["slope"].nunique() < 2 or cells["asr"].nunique() < 2:
        return f"n/a ({len(cells)} points)"
    return f"{spearmanr(cells['slope'], cells['asr']).statistic:.3f} ({len(cells)} points)"
