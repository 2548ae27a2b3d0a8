"""Running a sweep that is not one fixed plan: an Optuna search, or a slope screen's two stages.

Both run under the sweep's lock with the launcher's pieces — `StoreWriter` writes each trial's
part file atomically, `sweep.launcher._fit` runs a fixed list of trials (the screen's stages) —
and record in sweep.json what they did (``search``: configurations, results per stage, what the
full grid would have cost, the screen's table). `stored_plans` is the plan `verify` checks a
store against; `plan_of_row` the plan `explain` rebuilds a result from.

**Optuna.** One ``Tuner`` with ``search_alg`` = `sweep.searcher.StoreAwareOptuna` and
``num_samples`` = the configurations still to run. A trial gets the sampled configuration,
plans its results (every attack setting × seed, `sweep.plan.plan_configurations`) and reports
its objective values over them with every batch (`sweep.sampling.ObjectiveTracker`); the
searcher reads the last report. The driver's callback registers each trial's plan with the
writer when it starts and saves the searcher after each trial's part file is written.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweep.plan import TrialPlan, plan_configurations, plan_trials
from sweep.progress import Progress
from sweep.search import FULL_STAGE, SCREEN_STAGE, STAGE_COLUMN
from sweep.store import Store

if TYPE_CHECKING:
    import pandas as pd

    from sweep.launcher import SweepOutcome
    from sweep.spec import Spec


def run_search(
    spec: Spec,
    *,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    num_cpus: int | None = None,
) -> SweepOutcome:
    """Run (or finish) an Optuna search or a slope screen; see the module docstring."""
    from sweep.launcher import SweepOutcome, _check_existing, close_meta, init_ray, open_meta
    from trainables.data.datasets import load_dataset

    store = Store(spec.store)
    t_start = time.perf_counter()
    with store.lock(spec.name):
        _check_existing(spec, store, resume=resume, overwrite=overwrite)
        data = load_dataset(spec.dataset)  # a missing or bad data folder fails before Ray starts
        run = (
            _OptunaRun(spec, store)
            if spec.search.algorithm == "optuna"
            else _ScreenRun(spec, store)
        )
        started = init_ray(address, num_cpus) if run.pending() else False
        meta, _ = open_meta(spec, store, run.n_configurations)
        counts = {"ok": 0, "error": 0, "skipped": 0}
        complete = False
        try:
            complete = run.run(data, counts, show_progress)
        finally:
            close_meta(
                spec,
                store,
                meta,
                complete=complete,
                wall=time.perf_counter() - t_start,
                resume=resume,
                search=run.summary(),
            )
            if started:
                import ray

                ray.shutdown()
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


def _stored(store: Store, name: str) -> pd.DataFrame:
    import pandas as pd

    return store.read_table("trials", name) if store.exists(name) else pd.DataFrame()


# -- slope screening -------------------------------------------------------------------------
class _ScreenRun:
    def __init__(self, spec: Spec, store: Store) -> None:
        from sweep.screening import screen_plans

        self.spec, self.store = spec, store
        self.stage_one = screen_plans(spec)
        self.n_configurations = len(self.stage_one)
        self.screened = None
        self.stage_two: list[TrialPlan] | None = None

    def _done(self) -> set[str]:
        return (
            self.store.done_trials(self.spec.name) if self.store.exists(self.spec.name) else set()
        )

    def _screen(self) -> None:
        from sweep.screening import full_plans, screen

        self.screened = screen(self.spec, self.stage_one, _stored(self.store, self.spec.name))
        self.stage_two = full_plans(self.spec, self.screened.kept)

    def pending(self) -> bool:
        done = self._done()
        if {p.trial_id for p in self.stage_one} - done:
            return True
        self._screen()
        return bool({p.trial_id for p in self.stage_two or []} - done)

    def run(self, data, counts: dict, show_progress: bool) -> bool:
        from sweep.search import n_keep, probe_setting

        total = sum(len(p.results) for p in self.stage_one)
        print(
            f"stage one: {len(self.stage_one)} configurations at the probe "
            f"({_format(probe_setting(self.spec))}) x {len(self.spec.seeds)} seeds = {total} "
            f"results; stage two runs the full attack grid on at most "
            f"{n_keep(self.spec.search, len(self.stage_one))} of them",
            file=sys.stderr,
            flush=True,
        )
        if not _run_plans(self.spec, self.store, data, self.stage_one, counts, show_progress):
            return False
        self._screen()
        kept = ", ".join(_format(c) for c in self.screened.kept) or "none"
        print(
            f"stage two: the full attack grid on {len(self.stage_two)} of "
            f"{self.screened.n_eligible} accurate configurations: {kept}",
            file=sys.stderr,
            flush=True,
        )
        return _run_plans(self.spec, self.store, data, self.stage_two, counts, show_progress)

    def n_results(self) -> int:
        plans = self.stage_one + (self.stage_two or [])
        return sum(len(p.results) for p in plans)

    def summary(self) -> dict:
        from sweep.screening import screen_summary

        n_one = sum(len(p.results) for p in self.stage_one)
        n_two = sum(len(p.results) for p in self.stage_two or [])
        return screen_summary(self.spec, self.screened, n_one, n_two)


def _format(values: dict) -> str:
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()
    )


def _run_plans(spec, store, data, plans, counts, show_progress) -> bool:
    """Run the plans without a part file; True when every plan has one afterwards."""
    from sweep.launcher import StoreWriter, _fit

    done = store.done_trials(spec.name)
    todo = [p for p in plans if p.trial_id not in done]
    counts["skipped"] += sum(len(p.results) for p in plans if p.trial_id in done)
    if todo:
        progress = Progress(total=sum(len(p.results) for p in todo), enabled=show_progress)
        writer = StoreWriter(spec, store, todo, progress)
        try:
            _fit(spec, data, todo, writer)
        finally:
            progress.close()
            counts["ok"] += writer.n_ok
            counts["error"] += writer.n_error
    return store.done_trials(spec.name) >= {p.trial_id for p in plans}


# -- Optuna ----------------------------------------------------------------------------------
@dataclass
class SearchTemplate:
    """What an Optuna trial needs to plan and score its configuration (sent once, by reference)."""

    spec: Any
    objectives: list[str]
    settings: list[str]
    cpus: int

    def plan(self, configuration: dict) -> TrialPlan:
        return plan_configurations(self.spec, [dict(configuration)])[0]


class _OptunaRun:
    def __init__(self, spec: Spec, store: Store) -> None:
        self.spec, self.store = spec, store
        self.n_configurations = int(spec.search.num_samples or 0)
        self.searcher = None

    def _stored_configurations(self) -> int:
        df = _stored(self.store, self.spec.name)
        return int(df["trial_id"].nunique()) if not df.empty else 0

    def pending(self) -> bool:
        return self._stored_configurations() < self.n_configurations

    def run(self, data, counts: dict, show_progress: bool) -> bool:
        from sweep.searcher import make_searcher, restore_state, stored_objectives

        spec = self.spec
        df = _stored(self.store, spec.name)
        stored = stored_objectives(spec, df) if not df.empty else {}
        counts["skipped"] += len(df)
        self.searcher = make_searcher(spec)
        folder = self.store.sweep_dir(spec.name)
        restored = restore_state(self.searcher, folder)
        self.searcher.catch_up(stored)
        remaining = self.n_configurations - len(stored)
        if remaining <= 0:
            return True
        print(
            f"{spec.search.sampler}: {remaining} of {self.n_configurations} configurations to run"
            + (f" ({len(stored)} stored; searcher state restored)" if restored else ""),
            file=sys.stderr,
            flush=True,
        )
        per_config = len(self.template().plan(_any_configuration(spec)).results)
        progress = Progress(total=remaining * per_config, enabled=show_progress)
        from sweep.launcher import StoreWriter

        writer = StoreWriter(spec, self.store, [], progress)
        try:
            self._fit(data, writer, remaining, folder)
        finally:
            progress.close()
            counts["ok"] += writer.n_ok
            counts["error"] += writer.n_error
        return self.searcher.exhausted or self._stored_configurations() >= self.n_configurations

    def template(self) -> SearchTemplate:
        spec = self.spec
        return SearchTemplate(
            spec,
            [o.metric for o in spec.search.objectives],
            spec.inner_axes(),
            max(1, int(spec.execution.cpus_per_trial)),
        )

    def _fit(self, data, writer, remaining: int, folder) -> None:
        from ray import tune

        spec = self.spec
        trainable = tune.with_resources(
            tune.with_parameters(_search_trial, data=data, template=self.template()),
            {"cpu": spec.execution.cpus_per_trial, "gpu": spec.execution.gpus_per_trial},
        )
        scratch = tempfile.mkdtemp(prefix="backdoor-sweep-tune-")
        callback = _make_callback(writer, self.template(), self.searcher, folder)
        try:
            tuner = tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    search_alg=self.searcher,
                    num_samples=remaining,
                    max_concurrent_trials=spec.search.max_concurrent
                    or spec.execution.max_concurrent_trials,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=spec.name,
                    storage_path=scratch,
                    verbose=0,
                    callbacks=[callback],
                    failure_config=tune.FailureConfig(max_failures=spec.execution.max_failures),
                ),
            )
            tuner.fit()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def n_results(self) -> int:
        return len(_stored(self.store, self.spec.name))

    def summary(self) -> dict:
        df = _stored(self.store, self.spec.name)
        return {
            "algorithm": "optuna",
            "strategy": "full",
            "sampler": self.spec.search.sampler,
            "configurations": int(df["trial_id"].nunique()) if not df.empty else 0,
            "results": len(df),
            "exhausted": bool(getattr(self.searcher, "exhausted", False)),
        }


def _any_configuration(spec: Spec) -> dict:
    from sweep.plan import outer_axes
    from sweep.search import Range

    return {
        a: spec.grid[a].endpoints()[0] if isinstance(spec.grid[a], Range) else spec.grid[a][0]
        for a in outer_axes(spec)
    }


def _search_trial(config: dict, data, template: SearchTemplate) -> None:
    """One Optuna trial: plan the sampled configuration's results, run them, report objectives."""
    from sweep.sampling import ObjectiveTracker
    from trainables.trial import tune_trial

    plan = template.plan(config)
    tracker = ObjectiveTracker(template.objectives, plan.results, template.settings)
    tune_trial(
        {"trial_id": plan.trial_id, "cpus": template.cpus, "results": plan.results},
        data,
        summarise=tracker,
    )


def _make_callback(writer, template: SearchTemplate, searcher, folder):
    from ray.tune import Callback

    from sweep.launcher import _trial_error_text
    from sweep.searcher import save_state

    class _SearchCallback(Callback):
        """Plans each sampled trial for the writer; saves the searcher after each part file."""

        def __init__(self, writer, template, searcher, folder) -> None:
            self.writer, self.template, self.searcher, self.folder = (
                writer,
                template,
                searcher,
                folder,
            )
            self.ids: dict[str, str] = {}

        # Tune pickles its run config; the writer, searcher and store live in the driver only
        def __getstate__(self):
            return {}

        def _id(self, trial) -> str:
            if trial.trial_id not in self.ids:
                plan = self.template.plan(trial.config)
                self.writer.add_plan(plan)
                self.ids[trial.trial_id] = plan.trial_id
            return self.ids[trial.trial_id]

        def on_trial_start(self, iteration, trials, trial, **info):
            self._id(trial)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.writer.result(self._id(trial), result)
            result.pop("results", None)  # the rows are in the writer now (see sweep.launcher)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.writer.complete(self._id(trial))
            save_state(self.searcher, self.folder)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.writer.complete(self._id(trial), error=_trial_error_text(trial))
            save_state(self.searcher, self.folder)

        def on_trial_recover(self, iteration, trials, trial, **info):
            self.writer.retry(self._id(trial), trial.num_failures, _trial_error_text(trial))

    return _SearchCallback(writer, template, searcher, folder)


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
