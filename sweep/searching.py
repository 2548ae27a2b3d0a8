"""Running a sweep that is not one fixed plan: an Optuna search, or a slope screen's two stages.

Both run under the sweep's lock with the launcher's pieces — `StoreWriter` writes each trial's
part file atomically, `sweep.launcher._fit` runs a fixed list of trials (the screen's stages) —
and record in sweep.json what they did (``search``: configurations, results per stage, what the
full grid would have cost, the screen's table). `stored_plans` is the plan `verify` checks a
store against; `plan_of_row` the plan `explain` rebuilds a result from.

The runs themselves: `sweep.searcher.OptunaRun` and `sweep.screening.ScreenRun` — each says
whether anything is left (``pending``), runs it (``run``) and what to record (``summary``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from backdoor_sweep.errors import SweepError
from sweep.plan import TrialPlan, plan_configurations, plan_trials
from sweep.progress import Progress
from sweep.search import FULL_STAGE, SCREEN_STAGE, STAGE_COLUMN
from sweep.store import Store

if TYPE_CHECKING:
    import pandas as pd

    from sweep.launcher import SweepOutcome, SweepStart
    from sweep.spec import Spec


def run_search(
    spec: Spec,
    *,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    num_cpus: int | None = None,
    store: Store | None = None,
    on_start: Callable[[SweepStart], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> SweepOutcome:
    """Run (or finish) an Optuna search or a slope screen; see the module docstring.

    What `sweep.launcher.run_sweep` does for a grid, in the same order and with the same
    refusals before the store is touched (`sweep.claim`): ``store`` overrides
    ``spec.store``, ``on_start`` is told the search's budget (`SweepStart.n_configurations`;
    results and trials are upper bounds) before any slow step, ``overwrite`` replaces a stored
    sweep once the new run is ready, ``extra_meta`` goes into a new sweep's ``sweep.json``.

    ``on_progress`` is called with the run's one `Progress` after every finished result, as for
    a grid. Its ``total`` is the work the search knows of: a slope screen counts stage one's
    results still to run, and adds stage two's once the screen has chosen them; an Optuna search
    counts the results of the configurations it still has budget for (fewer run if the space is
    exhausted). ``stored`` is what the store held before the run; ``done`` never goes back.
    """
    from sweep.claim import check_before_run, claimed
    from sweep.launcher import SweepOutcome, SweepStart, close_meta, open_meta

    store = store if store is not None else Store(spec.store)
    t_start = time.perf_counter()
    check_before_run(spec, store, address=address, resume=resume, overwrite=overwrite)
    if spec.search.algorithm == "optuna":
        from sweep.searcher import OptunaRun as Run
    else:
        from sweep.screening import ScreenRun as Run
    run = Run(spec, store)
    fresh = overwrite or not store.exists(spec.name)
    n_trials, n_todo = run.budget(fresh)
    n_stored = 0 if fresh else len(stored_rows(store, spec.name))
    if on_start is not None:
        on_start(
            SweepStart(
                spec.name,
                spec.n_results,
                n_trials,
                n_stored,
                n_todo,
                store,
                overwrite and store.exists(spec.name),
                n_configurations=run.n_configurations,
            )
        )
    counts = {"ok": 0, "error": 0, "skipped": 0}
    complete = False
    with claimed(
        spec,
        store,
        address=address,
        num_cpus=num_cpus,
        resume=resume,
        overwrite=overwrite,
        needs_ray=n_todo > 0,
    ) as data:
        meta, _ = open_meta(spec, store, run.n_configurations, extra_meta)
        progress = Progress(total=0, enabled=show_progress, on_advance=on_progress, stored=n_stored)
        failed = True
        try:
            complete = run.run(data, counts, progress)
            failed = False
        finally:
            progress.close()
            try:
                close_meta(
                    spec,
                    store,
                    meta,
                    complete=complete,
                    wall=time.perf_counter() - t_start,
                    resume=resume,
                    search=run.summary(),
                )
            except SweepError:
                if not failed:  # the store failed before: that error is the one to show
                    raise
    return SweepOutcome(
        spec.name,
        run.n_results(),
        counts["ok"],
        counts["error"],
        counts["skipped"],
        time.perf_counter() - t_start,
        store,
        complete,
    )


def stored_rows(store: Store, name: str) -> pd.DataFrame:
    import pandas as pd

    return store.read_table("trials", name) if store.exists(name) else pd.DataFrame()


def format_values(values: dict) -> str:
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def run_plans(spec, store, data, plans, counts, progress: Progress) -> bool:
    """Run the plans without a part file, their results added to ``progress``'s total; True
    when every plan has one afterwards."""
    from sweep.launcher import StoreWriter, _fit

    done = store.done_trials(spec.name)
    todo = [p for p in plans if p.trial_id not in done]
    counts["skipped"] += sum(len(p.results) for p in plans if p.trial_id in done)
    if todo:
        progress.grow(sum(len(p.results) for p in todo))
        writer = StoreWriter(spec, store, todo, progress)
        try:
            _fit(spec, data, todo, writer)
        finally:
            counts["ok"] += writer.n_ok
            counts["error"] += writer.n_error
    return store.done_trials(spec.name) >= {p.trial_id for p in plans}


# -- the plan of a stored sweep --------------------------------------------------------------
def stored_plans(spec: Spec, df: pd.DataFrame) -> list[TrialPlan]:
    """The trials the sweep should hold, given its stored rows ``df`` (what `verify` checks).

    A grid or random search: its fixed plan. A slope screen: stage one, and stage two as the
    stored stage-one rows choose it once stage one is complete. Optuna: one trial per stored
    configuration, planned again from its values.
    """
    if spec.search.algorithm == "optuna":
        if df.empty:
            return []
        from sweep.plan import outer_axes

        axes = outer_axes(spec)
        firsts = df.drop_duplicates("trial_id")
        return plan_configurations(
            spec, [{a: _plain(r[a]) for a in axes} for r in firsts.to_dict("records")]
        )
    if spec.search.strategy == "slope_screen":
        from sweep.screening import full_plans, screen, screen_plans

        one = screen_plans(spec)
        stored = set(df["trial_id"]) if not df.empty else set()
        if {p.trial_id for p in one} - stored:
            return one
        return one + full_plans(spec, screen(spec, one, df).kept)
    return plan_trials(spec)


def possible_plans(spec: Spec) -> list[TrialPlan]:
    """Every kind of trial the sweep may run: what its store's one schema is made of
    (`sweep.schema`), without drawing a sample.

    A grid is its plan. A sampled range may take any value between its endpoints, all of one
    kind, so a search counts its ranges by their endpoints beside every value of its lists; a
    slope screen may keep any configuration for stage two.
    """
    if spec.search.is_default:
        return plan_trials(spec)
    import itertools

    from sweep.plan import outer_axes
    from sweep.search import Range

    axes = outer_axes(spec)
    lists = [
        spec.grid[a].endpoints() if isinstance(spec.grid[a], Range) else spec.grid[a] for a in axes
    ]
    configs = [dict(zip(axes, v, strict=True)) for v in itertools.product(*lists)]
    if spec.search.strategy == "slope_screen":
        from sweep.screening import full_plans, screen_plans

        return screen_plans(spec, configs) + full_plans(spec, configs)
    return plan_configurations(spec, configs)


def plan_of_row(spec: Spec, row: dict) -> list[TrialPlan]:
    """The trial that computed ``row`` (a stored result), planned again from its values."""
    if not spec.search.staged:
        return plan_trials(spec)
    from sweep.plan import outer_axes

    configuration = {a: _plain(row[a]) for a in outer_axes(spec) if a in row}
    stage = row.get(STAGE_COLUMN)
    if stage == SCREEN_STAGE:
        from sweep.screening import screen_plans

        return [p for p in screen_plans(spec) if p.outer == configuration] or []
    return plan_configurations(
        spec, [configuration], stage=FULL_STAGE if stage == FULL_STAGE else None
    )


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
