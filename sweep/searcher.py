"""Optuna through Ray Tune: a searcher that knows the store, and its state in the sweep folder.

`StoreAwareOptuna` is Ray Tune's ``OptunaSearch`` over the spec's space (`sweep.sampling.tune_space`,
converted by ``OptunaSearch.convert_search_space``), with ``search.seed``: TPE for one objective,
NSGA-II for several (population `population_size`, so a small budget still sees generations).
It adds what a sweep needs around it:

- **one trial per configuration**: a configuration drawn again (Optuna does that on small or
  categorical spaces) is told its known value, or a failure while its first draw still runs, and
  another is asked for; after ``MAX_REDRAWS`` repeats in a row the search ends (the space is
  exhausted);
- **its state in the sweep folder**: after each finished trial the driver pickles the searcher
  (``searcher.save``) to ``<sweep>/searcher.pkl`` atomically, after the trial's part file; `resume`
  restores it (``searcher.restore``) — Optuna's study and its sampler's random state — marks the
  trials that were running when the driver stopped as failed, and tells the study about every
  configuration of the store it does not know yet (one stored between the part and the state).
  The store stays the truth: a lost state file costs the sampler's memory, never a result.

`OptunaRun` runs it: one ``Tuner`` with ``search_alg`` = the searcher and ``num_samples`` = the
configurations still missing. A trial gets the sampled configuration, plans its results (every
attack setting × seed, `sweep.plan.plan_configurations`) and reports its objective values over
them with every batch (`sweep.sampling.ObjectiveTracker`); the searcher reads the last report.
The driver's callback hands each trial's plan to the writer when the trial starts and saves the
searcher after each trial's part file.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from backdoor_sweep.errors import SweepError
from sweep.cluster import callers_signals
from sweep.plan import TrialPlan, plan_configurations
from sweep.progress import Progress
from sweep.sampling import configuration_key, tune_space
from sweep.searching import stored_rows

if TYPE_CHECKING:
    import pandas as pd

    from sweep.spec import Spec
    from sweep.store import Store

STATE_FILE = "searcher.pkl"
#: repeated draws in a row after which the space counts as exhausted
MAX_REDRAWS = 50


def population_size(num_samples: int) -> int:
    """NSGA-II's population: a quarter of the budget, at least 4 and at most Optuna's 50."""
    return max(4, min(50, math.ceil(num_samples / 4)))


def make_searcher(spec: Spec) -> StoreAwareOptuna:
    """A fresh `StoreAwareOptuna` for ``spec`` (Optuna's per-trial log lines off: the store has them)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return StoreAwareOptuna(spec)


class StoreAwareOptuna(OptunaSearch):
    """``OptunaSearch`` that never runs a configuration twice and catches up with the store."""

    def __init__(self, spec: Spec) -> None:
        search = spec.search
        metrics = [o.metric for o in search.objectives]
        modes = [o.mode for o in search.objectives]
        if len(metrics) == 1:
            sampler = optuna.samplers.TPESampler(seed=search.seed)
            metric, mode = metrics[0], modes[0]
        else:
            sampler = optuna.samplers.NSGAIISampler(
                seed=search.seed, population_size=population_size(search.num_samples or 1)
            )
            metric, mode = metrics, modes
        space = OptunaSearch.convert_search_space(tune_space(spec))
        super().__init__(space=space, metric=metric, mode=mode, sampler=sampler)
        self._spec = spec
        self._keys: dict[str, str] = {}  # Tune trial id -> configuration key (trial id)
        self._values: dict[str, Any] = {}  # configuration key -> objective values (None: failed)
        self._taken: set[str] = set()  # configurations evaluated or being evaluated
        self.exhausted = False

    def suggest(self, trial_id: str):
        for _ in range(MAX_REDRAWS):
            params = super().suggest(trial_id)
            key = configuration_key(self._spec, params)
            if key not in self._taken:
                self._taken.add(key)
                self._keys[trial_id] = key
                return params
            ot_trial = self._ot_trials.pop(trial_id)
            known = self._values.get(key)
            if known is not None:
                self._ot_study.tell(ot_trial, known)
            else:  # its first draw is still running (or failed)
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
        self.exhausted = True
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        super().on_trial_complete(trial_id, result=result, error=error)
        key = self._keys.pop(trial_id, None)
        if key is not None:
            self._values[key] = None if error or not result else self._objective_of(result)

    def _objective_of(self, values: dict) -> Any:
        if isinstance(self.metric, list):
            out = [_number(values.get(m)) for m in self.metric]
            return None if any(v is None for v in out) else out
        return _number(values.get(self.metric))

    def catch_up(self, stored: dict[str, tuple[dict, dict]]) -> None:
        """Forget the Tune trials of an earlier run and learn every stored configuration.

        ``stored``: configuration key -> (its parameters, its objective values by metric;
        empty when every result failed).
        """
        for tid, ot_trial in list(self._ot_trials.items()):
            if tid not in self._completed_trials:  # running when the driver stopped
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
        self._ot_trials.clear()
        self._completed_trials.clear()
        self._keys.clear()
        for key, (params, objective) in stored.items():
            if key in self._values:
                continue
            values = self._objective_of(objective) if objective else None
            many = isinstance(values, list)
            self._ot_study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.FAIL if values is None else TrialState.COMPLETE,
                    values=values if many else None,
                    value=None if many else values,
                    params={k: params[k] for k in self._space},
                    distributions=self._space,
                )
            )
            self._values[key] = values
        self._taken = set(self._values)


def _number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# -- the state file --------------------------------------------------------------------------
def save_state(searcher, folder: Path) -> None:
    """Pickle the searcher to ``folder/searcher.pkl``: a temporary file, then a rename."""
    tmp = folder / f".tmp-{uuid.uuid4().hex}-{STATE_FILE}"
    searcher.save(str(tmp))
    os.replace(tmp, folder / STATE_FILE)


def restore_state(searcher, folder: Path) -> bool:
    """Load ``folder/searcher.pkl`` into a fresh searcher; False when there is none yet.

    The file is a pickle: resume only sweeps whose store you trust, like any Ray Tune state.
    """
    path = folder / STATE_FILE
    if not path.is_file():
        return False
    try:
        searcher.restore(str(path))
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as err:
        raise SweepError(
            f"store file {path} is corrupt ({type(err).__name__}: {err}); delete it to resume "
            "the search with a fresh searcher (every stored result is kept)"
        ) from None
    return True


def stored_objectives(spec: Spec, df: pd.DataFrame) -> dict[str, tuple[dict, dict]]:
    """Configuration key -> (parameters, objective values) of every configuration in ``df``."""
    from sweep.plan import outer_axes
    from sweep.sampling import objective_value

    axes = outer_axes(spec)
    names = [o.metric for o in spec.search.objectives]
    out: dict[str, tuple[dict, dict]] = {}
    for trial_id, rows in df.groupby("trial_id", sort=False):
        records = rows.to_dict("records")
        params = {a: _plain(records[0][a]) for a in axes}
        ok = [(r, r) for r in records if r.get("status", "ok") == "ok"]
        objective = {n: objective_value(ok, n, spec.inner_axes()) for n in names} if ok else {}
        out[str(trial_id)] = (params, objective)
    return out


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


# -- the run ----------------------------------------------------------------------------------
@dataclass
class SearchTemplate:
    """What an Optuna trial needs to plan and score its configuration (sent once, by reference)."""

    spec: Any
    objectives: list[str]
    settings: list[str]
    cpus: int
    #: the store's cache of what trials compute once (`sweep.store.Store.cache_dir`)
    cache_dir: str

    def plan(self, configuration: dict) -> TrialPlan:
        """The configuration's one trial: every attack setting × seed (a search never runs
        under an ``execution.scheduler``, which would make each seed its own trial)."""
        return plan_configurations(self.spec, [dict(configuration)])[0]


class OptunaRun:
    """Run (or finish) an Optuna search with one Tuner (`sweep.searching.run_search`)."""

    def __init__(self, spec: Spec, store: Store) -> None:
        self.spec, self.store = spec, store
        self.n_configurations = int(spec.search.num_samples or 0)
        self.searcher = None

    def _stored_configurations(self) -> int:
        df = stored_rows(self.store, self.spec.name)
        return int(df["trial_id"].nunique()) if not df.empty else 0

    def budget(self, fresh: bool) -> tuple[int, int]:
        """Trials the search runs at most (one per configuration), and how many of them are
        still to run (all of them when ``fresh``: a new sweep, or one being replaced)."""
        stored = 0 if fresh else self._stored_configurations()
        return self.n_configurations, max(0, self.n_configurations - stored)

    def run(self, data, counts: dict, progress: Progress) -> bool:
        spec = self.spec
        df = stored_rows(self.store, spec.name)
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
        progress.grow(remaining * per_config)
        from sweep.launcher import StoreWriter

        writer = StoreWriter(spec, self.store, [], progress)
        try:
            self._fit(data, writer, remaining, folder)
        finally:
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
            str(self.store.cache_dir.resolve()),
        )

    def _fit(self, data, writer, remaining: int, folder) -> None:
        from ray import tune

        from sweep.claim import StoreFailed
        from sweep.writer import make_stopper

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
                    stop=make_stopper(writer),
                    failure_config=tune.FailureConfig(max_failures=spec.execution.max_failures),
                ),
            )
            with callers_signals():  # Tune leaves its SIGINT handler installed after the run
                tuner.fit()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if writer.failure is not None:  # `sweep.claim.claimed` says what was kept
            raise StoreFailed(writer.failure)

    def n_results(self) -> int:
        return len(stored_rows(self.store, self.spec.name))

    def summary(self) -> dict:
        df = stored_rows(self.store, self.spec.name)
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
    # trained generators are kept beside the store, as in a grid sweep (`sweep.launcher`)
    tune_trial(
        {
            "trial_id": plan.trial_id,
            "cpus": template.cpus,
            "results": plan.results,
            "cache_dir": template.cache_dir,
        },
        data,
        summarise=tracker,
    )


def _make_callback(writer, template: SearchTemplate, searcher, folder):
    from ray.tune import Callback

    from sweep.searcher import save_state
    from sweep.writer import _trial_error_text

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
