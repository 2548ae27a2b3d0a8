"""Launch a sweep on Ray Tune and write its results to the store as trials finish.

``Tuner`` + ``TuneConfig(reuse_actors=True)`` + ``RunConfig``; the dataset reaches the workers once
through ``tune.with_parameters``; each trial reports its finished results in batches with
``tune.report``. The driver owns the store: a Tune callback buffers a trial's rows and writes them
as one atomic part file when the trial ends — rows with ``status = "error"`` and the error text if
it failed for good (after ``execution.max_failures`` retries: a raising trial, or a node that died).

Nothing is lost or written twice: a part file appears only for a finished trial, so a driver killed
mid-sweep leaves whole trials or nothing, ``resume`` runs exactly the trials without a part, and a
retried trial's results are keyed by result id (`sweep.writer`). The run holds the sweep's lock
(`Store.lock`), taken only once nothing can refuse the run any more (`sweep.claim`).

With an ``execution.scheduler`` (sweep/execution.py) network trials also report after every epoch;
a trial the scheduler stops is stored with ``status = "stopped"``, the epoch it reached and that
epoch's metrics (its part file is written, so ``resume`` does not run it again).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backdoor_sweep.errors import SweepError
from sweep.claim import StoreFailed, check_before_run, claimed
from sweep.cluster import callers_signals
from sweep.execution import make_scheduler
from sweep.plan import TrialPlan, plan_trials
from sweep.progress import Progress
from sweep.spec import Spec
from sweep.store import Store
from sweep.writer import StoreWriter, library_versions, make_callback, make_stopper, now_utc


@dataclass
class SweepOutcome:
    name: str
    n_results: int
    n_ok: int
    n_error: int
    n_skipped: int
    wall_seconds: float
    store: Store
    #: every trial of the plan has its part file (False after an interrupted run)
    complete: bool = True
    #: results of trials an execution.scheduler stopped early (status "stopped")
    n_stopped: int = 0


@dataclass(frozen=True)
class SweepStart:
    """What a run is about to do, told to ``run_sweep(on_start=...)`` before any slow step."""

    name: str
    n_results: int
    n_trials: int
    #: results already in the store (a resumed sweep); they are not run again
    n_stored: int
    #: trials this run sends to Tune
    n_todo: int
    store: Store
    #: an existing sweep of this name is replaced (``overwrite``)
    replaces: bool
    #: a search (Optuna, a slope screen): the configurations it looks at. Its results and trials
    #: are then upper bounds — what runs depends on what the search finds (None: a fixed plan)
    n_configurations: int | None = None


def run_sweep(
    spec: Spec,
    *,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    num_cpus: int | None = None,
    trial_fn: Callable[[dict, Any], None] | None = None,
    store: Store | None = None,
    on_start: Callable[[SweepStart], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> SweepOutcome:
    """Run every result of ``spec`` not yet in its store; return counts and the wall time.

    Everything that can refuse the run does so before the store is touched (a refused run creates
    nothing there, not even a lock): the address answers (`sweep.cluster.probe_address`), no other
    process writes the sweep, the sweep may be created, resumed or replaced, the dataset loads, Ray
    is up and a node can hold one trial. Only then is the lock taken and — with ``overwrite`` — the
    old sweep moved aside; it is put back if the run fails (`_replacing`).

    ``store`` overrides ``spec.store`` (a store that was moved or copied since the sweep started),
    for grids and searches alike. ``on_start`` is told the plan once it is known (a search: its
    budget, `SweepStart.n_configurations`). ``num_cpus`` caps an in-process Ray (ignored
    with ``address``). ``trial_fn(config, data)`` is what each Tune trial runs (default
    `trainables.trial.tune_trial`); tests wrap it to inject faults. It must be importable by the
    workers or pickled by value. ``on_progress`` is called with the `Progress` of this run after
    every finished result (a search's total grows as it learns its work: `sweep.searching.run_search`);
    ``extra_meta`` goes into a new sweep's ``sweep.json``
    (the team service records who submitted it).
    """
    if spec.search.staged:  # Optuna, or a slope screen's two stages
        from sweep.searching import run_search

        return run_search(
            spec,
            address=address,
            resume=resume,
            overwrite=overwrite,
            show_progress=show_progress,
            num_cpus=num_cpus,
            store=store,
            on_start=on_start,
            on_progress=on_progress,
            extra_meta=extra_meta,
        )
    store = store if store is not None else Store(spec.store)
    t_start = time.perf_counter()
    check_before_run(spec, store, address=address, resume=resume, overwrite=overwrite)
    plans = plan_trials(spec)
    fresh = overwrite or not store.exists(spec.name)
    done = set() if fresh else store.done_trials(spec.name)
    todo = [p for p in plans if p.trial_id not in done]
    if on_start is not None:
        n_stored = sum(len(p.results) for p in plans if p.trial_id in done)
        replaces = overwrite and store.exists(spec.name)
        on_start(
            SweepStart(spec.name, spec.n_results, len(plans), n_stored, len(todo), store, replaces)
        )
    with claimed(
        spec,
        store,
        address=address,
        num_cpus=num_cpus,
        resume=resume,
        overwrite=overwrite,
        needs_ray=bool(todo),  # a finished sweep needs no Ray
    ) as data:
        return _run_locked(
            spec,
            store,
            data,
            plans,
            t_start,
            resume,
            show_progress,
            trial_fn,
            on_progress=on_progress,
            extra_meta=extra_meta,
        )


def open_meta(
    spec: Spec, store: Store, n_trials: int, extra_meta: dict[str, Any] | None = None
) -> tuple[dict, set[str]]:
    """Mark the sweep running in its sweep.json (written first for a new sweep, with
    ``extra_meta``); the done trials."""
    if store.exists(spec.name):
        store.clean_temporaries(spec.name)
        done = store.done_trials(spec.name)
        meta = store.update_meta(spec.name, status="running", resumed_at=now_utc().isoformat())
        return meta, done
    meta = {
        "name": spec.name,
        "spec": spec.model_dump(mode="json"),
        "spec_digest": spec.digest(),
        "n_results": spec.n_results,
        "n_trials": n_trials,
        "status": "running",
        "created_at": now_utc().isoformat(),
        "versions": library_versions(),
        **(extra_meta or {}),
    }
    store.write_meta(spec.name, meta)
    return meta, set()


def close_meta(
    spec: Spec, store: Store, meta: dict, *, complete: bool, wall: float, resume: bool, **extra: Any
) -> None:
    """Record the end of a run: finished or incomplete, the wall time over every run, versions."""
    store.update_meta(
        spec.name,
        status="finished" if complete else "incomplete",
        finished_at=now_utc().isoformat(),
        wall_seconds=round(wall + float(meta.get("wall_seconds", 0.0) if resume else 0.0), 3),
        versions=library_versions(),
        **extra,
    )


def _run_locked(
    spec, store, data, plans, t_start, resume, show_progress, trial_fn, on_progress, extra_meta
) -> SweepOutcome:
    meta, done = open_meta(spec, store, len(plans), extra_meta)
    todo = [p for p in plans if p.trial_id not in done]
    n_skipped = sum(len(p.results) for p in plans if p.trial_id in done)

    progress = Progress(
        total=sum(len(p.results) for p in todo),
        enabled=show_progress,
        on_advance=on_progress,
        stored=n_skipped,
    )
    writer = StoreWriter(spec, store, todo, progress)
    try:
        if todo:
            _fit(spec, data, todo, writer, trial_fn)
    finally:
        progress.close()
        wall = time.perf_counter() - t_start
        complete = store.done_trials(spec.name) >= {p.trial_id for p in plans}
        try:
            close_meta(spec, store, meta, complete=complete, wall=wall, resume=resume)
        except SweepError:
            if writer.failure is None:  # the store failed before: that error is the one to show
                raise
    return SweepOutcome(
        spec.name,
        spec.n_results,
        writer.n_ok,
        writer.n_error,
        n_skipped,
        wall,
        store,
        complete,
        writer.n_stopped,
    )


def _fit(spec: Spec, data, todo: list[TrialPlan], writer: StoreWriter, trial_fn=None) -> None:
    from ray import tune

    cpus = spec.execution.cpus_per_trial
    trainable = tune.with_resources(
        # the results reach the workers once, through the object store, beside the data: a Tune
        # config is deep-copied and JSON-saved over and over by the driver (BENCHMARKS.md)
        tune.with_parameters(
            _trainable(trial_fn), data=data, results={p.trial_id: p.results for p in todo}
        ),
        {"cpu": cpus, "gpu": spec.execution.gpus_per_trial},
    )
    # what trials compute once for every sweep (trained generators) goes beside the store
    cache = str(writer.store.cache_dir.resolve())
    configs = [
        {"trial_id": p.trial_id, "cpus": max(1, int(cpus)), "cache_dir": cache} for p in todo
    ]
    scratch = tempfile.mkdtemp(prefix="backdoor-sweep-tune-")
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(configs)},
            tune_config=tune.TuneConfig(
                scheduler=make_scheduler(spec),  # None: Tune's FIFO without per-epoch reports
                reuse_actors=True,
                max_concurrent_trials=spec.execution.max_concurrent_trials
                or spec.search.max_concurrent,
                trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=scratch,
                verbose=0,
                callbacks=[make_callback(writer)],
                stop=make_stopper(writer),
                failure_config=tune.FailureConfig(max_failures=spec.execution.max_failures),
            ),
        )
        with callers_signals():  # Tune leaves its SIGINT handler installed after the run
            tuner.fit()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if writer.failure is not None:
        raise StoreFailed(writer.failure)


def _trainable(trial_fn: Callable[[dict, Any], None] | None):
    if trial_fn is None:
        from trainables.trial import tune_trial as trial_fn

    def backdoor_trial(config, data, results):
        trial = config["trial"]
        trial_fn({**trial, "results": results[trial["trial_id"]]}, data)

    return backdoor_trial
