"""Launch a sweep on Ray Tune and write its results to the store as trials finish.

``Tuner`` + ``TuneConfig(reuse_actors=True)`` + ``RunConfig``; the dataset reaches the workers once
through ``tune.with_parameters``; each trial reports its finished results in batches with
``tune.report``. The driver owns the store: a Tune callback buffers a trial's rows and writes them
as one atomic part file when the trial ends — rows with ``status = "error"`` and the error text if
it failed for good (after ``execution.max_failures`` retries: a raising trial, or a node that died).

Nothing is lost or written twice: a part file appears only for a finished trial, so a driver killed
mid-sweep leaves whole trials or nothing, ``resume`` runs exactly the trials without a part, and a
retried trial's results are keyed by result id. The run holds the sweep's lock (`Store.lock`).

With an ``execution.scheduler`` (sweep/execution.py) network trials also report after every epoch;
a trial the scheduler stops is stored with ``status = "stopped"``, the epoch it reached and that
epoch's metrics (its part file is written, so ``resume`` does not run it again).
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from backdoor_sweep.errors import SweepError
from sweep.execution import check_devices, check_local_gpus, make_scheduler
from sweep.plan import TrialPlan, plan_trials
from sweep.progress import Progress
from sweep.schema import spec_schemas
from sweep.spec import Spec, first_difference, parse_spec
from sweep.store import Store
from trainables.data.datasets import load_dataset

#: Ray and Tune settings applied where Ray is started (``init_ray``), never on import: we write our
#: own store, so Tune's default loggers and its new console output stay off
RAY_ENVIRONMENT = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_DEDUP_LOGS": "1",
    "TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S": "0",
}


def configure_ray_environment() -> None:
    """Set ``RAY_ENVIRONMENT`` (unless the user set a value) and quieten Tune's result lookup."""
    for key, value in RAY_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    # we write our own store and keep Tune's loggers off, so Tune's result lookup has nothing to find
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


def library_versions() -> dict[str, str]:
    import numpy
    import pandas
    import pyarrow
    import ray
    import sklearn

    versions = {
        "python_version": platform.python_version(),
        "numpy_version": numpy.__version__,
        "sklearn_version": sklearn.__version__,
        "ray_version": ray.__version__,
        "pandas_version": pandas.__version__,
        "pyarrow_version": pyarrow.__version__,
    }
    torch = sys.modules.get("torch")
    versions["torch_version"] = getattr(torch, "__version__", "")
    return versions


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


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


@dataclass
class _Buffer:
    plan: TrialPlan
    rows: dict[str, dict] = field(default_factory=dict)
    curves: dict[str, list[dict]] = field(default_factory=dict)
    dynamics: dict[str, list[dict]] = field(default_factory=dict)
    #: the latest per-epoch report (epoch, train_loss, val_clean_acc, val_asr) under a scheduler
    epoch: dict = field(default_factory=dict)


def _row(sweep: str, trial_id: str, result: dict, versions: dict, **values: Any) -> dict:
    config = {k: v for k, v in result.items() if k not in ("curves", "result_id")}
    return {
        "sweep": sweep,
        "trial_id": trial_id,
        "result_id": result["result_id"],
        **config,
        **values,
        **versions,
    }


class StoreWriter:
    """Tune callback (see `_make_callback`): collect reported results and write part files."""

    def __init__(
        self, spec: Spec, store: Store, plans: list[TrialPlan], progress: Progress
    ) -> None:
        self.spec, self.store, self.progress = spec, store, progress
        self.buffers = {p.trial_id: _Buffer(p) for p in plans}
        self.results = {p.trial_id: {u["result_id"]: u for u in p.results} for p in plans}
        self.schemas = spec_schemas(spec)  # every part of a table gets the table's one schema
        self.versions = library_versions()
        self.n_ok = 0
        self.n_error = 0
        self.n_stopped = 0
        #: the store write that failed (a full disk…): nothing more is written, the sweep stops
        self.failure: SweepError | None = None

    def result(self, trial_id: str, report: dict) -> None:
        """Buffer one report of a trial: a batch of finished results (a retry may repeat some),
        or one epoch of a network trial under a scheduler (kept until the trial ends)."""
        from trainables.epochs import EPOCH_METRICS

        buf = self.buffers[trial_id]
        if "epoch" in report:
            buf.epoch = {k: report.get(k) for k in ("epoch", *EPOCH_METRICS)}
        fresh = 0
        for res in report.get("results", ()):
            key = res["result_id"]
            fresh += key not in buf.rows
            buf.rows[key] = _row(
                self.spec.name,
                trial_id,
                self.results[trial_id][key],
                self.versions,
                **res["row"],
                status="ok",
                error="",
                node_id=report.get("node_id", ""),
                started_at=datetime.fromtimestamp(res["started_at"], timezone.utc),
                finished_at=datetime.fromtimestamp(res["finished_at"], timezone.utc),
            )
            for table in ("curves", "dynamics"):
                getattr(buf, table)[key] = [
                    {"sweep": self.spec.name, "trial_id": trial_id, "result_id": key, **c}
                    for c in res.get(table, [])
                ]
        if fresh:
            self.progress.advance(fresh)

    def retry(self, trial_id: str, failures: int, error: str) -> None:
        """Say that a trial failed and Tune runs it again (up to ``execution.max_failures``)."""
        self.buffers[trial_id].epoch = {}  # the retry reports its own epochs
        first = error.strip().splitlines()[-1] if error.strip() else "unknown error"
        print(
            f"trial {trial_id} failed ({failures} of at most {self.spec.execution.max_failures} "
            f"retries), running it again: {first[:300]}",
            file=sys.stderr,
            flush=True,
        )

    def complete(self, trial_id: str, error: str | None = None) -> None:
        """Write the trial's parts; after a failed write, write nothing more (Tune then stops
        every trial, and stopping a trial calls this too)."""
        if self.failure is not None:
            return
        try:
            self._write(trial_id, error)
        except SweepError as err:
            self.failure = err

    def _write(self, trial_id: str, error: str | None) -> None:
        """The trial's results, and for the results it did not finish an ``error`` row — or,
        when a scheduler stopped it after some epoch, a ``stopped`` row."""
        buf = self.buffers[trial_id]
        rows = []
        stamp = now_utc()
        for result in buf.plan.results:
            if result["result_id"] in buf.rows:
                rows.append(buf.rows[result["result_id"]])
            elif error is None and buf.epoch:
                rows.append(
                    _row(
                        self.spec.name,
                        trial_id,
                        result,
                        self.versions,
                        **buf.epoch,
                        status="stopped",
                        error="",
                        node_id="",
                        started_at=stamp,
                        finished_at=stamp,
                    )
                )
                self.progress.advance(1)
            else:
                rows.append(
                    _row(
                        self.spec.name,
                        trial_id,
                        result,
                        self.versions,
                        status="error",
                        error=(error or "trial ended without reporting this result")[-2000:],
                        node_id="",
                        started_at=stamp,
                        finished_at=stamp,
                    )
                )
                self.progress.advance(1)
        for table in ("curves", "dynamics"):  # before the trials part, which marks the trial done
            extra = [
                c for u in buf.plan.results for c in getattr(buf, table).get(u["result_id"], [])
            ]
            if extra:
                self.store.write_part(self.spec.name, table, trial_id, extra, self.schemas[table])
        self.store.write_part(self.spec.name, "trials", trial_id, rows, self.schemas["trials"])
        ok = sum(r["status"] == "ok" for r in rows)
        stopped = sum(r["status"] == "stopped" for r in rows)
        self.n_ok += ok
        self.n_stopped += stopped
        self.n_error += len(rows) - ok - stopped
        buf.rows.clear()
        buf.curves.clear()
        buf.dynamics.clear()


def _make_callback(writer: StoreWriter):
    from ray.tune import Callback

    class _Cb(Callback):
        """Hands Tune's events to the driver-side writer."""

        def __init__(self, writer: StoreWriter) -> None:
            self.writer = writer

        # Tune pickles its run config into the experiment state; the writer (store handles,
        # progress bar, open streams) lives in the driver only and is not part of that state.
        def __getstate__(self):
            return {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.writer.result(trial.config["trial"]["trial_id"], result)
            # the rows are in the writer now; Tune would keep them as the trial's last result
            # and JSON-encode them into every experiment checkpoint (callbacks may edit it)
            result.pop("results", None)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.writer.complete(trial.config["trial"]["trial_id"])

        def on_trial_error(self, iteration, trials, trial, **info):
            self.writer.complete(trial.config["trial"]["trial_id"], error=_trial_error_text(trial))

        def on_trial_recover(self, iteration, trials, trial, **info):
            tid = trial.config["trial"]["trial_id"]
            self.writer.retry(tid, trial.num_failures, _trial_error_text(trial))

    return _Cb(writer)


def _make_stopper(writer: StoreWriter):
    from ray.tune import Stopper

    class _StopOnStoreFailure(Stopper):
        """Stops the whole sweep once a store write has failed (nothing more can be kept)."""

        def __init__(self, writer: StoreWriter) -> None:
            self.writer = writer

        def __call__(self, trial_id, result) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.writer.failure is not None

        def __getstate__(self):  # the writer lives in the driver only (see `_make_callback`)
            return {}

    return _StopOnStoreFailure(writer)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the remote traceback's first line


def _trial_error_text(trial) -> str:
    """The trial's latest failure: the remote traceback, ending in ``Type: message``.

    Read from the trial's local files: Tune's ``get_*error`` read the copy in the experiment's
    storage, which is synced later and still holds an earlier failure when a retry fails.
    """
    from ray import cloudpickle

    pickled = getattr(trial, "pickled_error_file", None)
    if pickled and os.path.exists(pickled):
        try:
            with open(pickled, "rb") as fh:
                err = cloudpickle.load(fh)
            return _ANSI.sub("", str(err)).strip() or type(err).__name__
        except Exception:  # an exception that does not unpickle on the driver
            pass
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        with open(path) as fh:  # every failure so far, each after a "Failure # n" line
            return fh.read().rsplit("Failure # ", 1)[-1].split("\n", 1)[-1].strip()
    return "trial failed"


TOKEN_HINT = (
    "a cluster with token authentication needs RAY_AUTH_MODE=token and its token in "
    "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
)


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to a cluster (``auto`` or HOST:PORT) or start Ray in-process. True if we started it.

    Connecting to HOST:PORT turns token authentication on when a token is at hand and
    ``RAY_AUTH_MODE`` is unset — what Ray itself does for ``auto`` but not for an explicit address.
    """
    configure_ray_environment()
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": True}
    if address:
        kwargs["address"] = address
        _token_auth_if_available()
    else:
        kwargs["include_dashboard"] = False
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except ConnectionError as err:
        raise SweepError(
            f"--address must reach a running Ray cluster that accepts this client; got {address!r} "
            f"({err}; {TOKEN_HINT})"
        ) from None
    except Exception as err:
        from ray.exceptions import AuthenticationError

        if isinstance(err, AuthenticationError):
            raise SweepError(f"--address {address!r} refused this client: {TOKEN_HINT}") from None
        raise
    return True


def _token_auth_if_available() -> None:
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # a Ray without token authentication
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def run_sweep(
    spec: Spec,
    *,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
    num_cpus: int | None = None,
    trial_fn: Callable[[dict, Any], None] | None = None,
) -> SweepOutcome:
    """Run every result of ``spec`` not yet in its store; return counts and the wall time.

    ``num_cpus`` caps an in-process Ray (ignored with ``address``). ``trial_fn(config, data)`` is
    what each Tune trial runs (default `trainables.trial.tune_trial`); tests wrap it to inject
    faults. It must be importable by the workers or pickled by value.
    """
    store = Store(spec.store)
    t_start = time.perf_counter()
    if address is None:
        check_local_gpus(spec)  # before the store is touched; a cluster is checked once joined
    with store.lock(spec.name):
        _check_existing(spec, store, resume=resume, overwrite=overwrite)
        data = load_dataset(spec.dataset)  # a missing or bad data folder fails before Ray starts
        plans = plan_trials(spec)
        done = store.done_trials(spec.name) if store.exists(spec.name) else set()
        # a refused cluster fails before the store is touched; a finished sweep needs no Ray
        to_run = {p.trial_id for p in plans} - done
        started = init_ray(address, num_cpus) if to_run else False
        try:
            if to_run:
                check_devices(spec)  # GPUs and bf16 where the trials will run, before any write
            return _run_locked(spec, store, data, plans, t_start, resume, show_progress, trial_fn)
        finally:
            if started:
                import ray

                ray.shutdown()


def _check_existing(spec: Spec, store: Store, *, resume: bool, overwrite: bool) -> None:
    """A stored sweep of this name is replaced, resumed with the same spec, or refused."""
    if store.exists(spec.name):
        if overwrite:
            store.delete_sweep(spec.name)
        elif resume:
            _check_same_spec(spec, store)
        else:
            raise SweepError(
                f"sweep {spec.name!r} already exists in {store.root}; "
                "pass --resume to finish it or --overwrite to replace it"
            )


def _check_same_spec(spec: Spec, store: Store) -> None:
    """Resuming needs the spec the sweep was started with, up to what changes no result (the
    store's path among them: a moved or copied store resumes). The stored spec is validated
    again, so stores written before a field was added compare by the field's default."""
    stored = store.read_meta(spec.name).get("spec")
    try:
        started = parse_spec(stored, source=f"the spec stored for sweep {spec.name!r}")
    except SweepError as err:
        raise SweepError(
            f"sweep {spec.name!r} cannot be resumed: its stored spec no longer validates ({err}); "
            "replace it with --overwrite or run under another --name"
        ) from None
    diff = first_difference(started, spec)
    if diff is not None:
        raise SweepError(
            f"--resume needs the spec sweep {spec.name!r} was started with; this one differs in "
            f"{diff}. Finish the stored one with `backdoor-sweep resume {spec.name} --store "
            f"{store.root}`, run this one under another --name, or replace it with --overwrite"
        )


def _run_locked(spec, store, data, plans, t_start, resume, show_progress, trial_fn) -> SweepOutcome:
    if store.exists(spec.name):
        store.clean_temporaries(spec.name)
        done = store.done_trials(spec.name)
        meta = store.update_meta(spec.name, status="running", resumed_at=now_utc().isoformat())
    else:
        done = set()
        meta = {
            "name": spec.name,
            "spec": spec.model_dump(mode="json"),
            "spec_digest": spec.digest(),
            "n_results": spec.n_results,
            "n_trials": len(plans),
            "status": "running",
            "created_at": now_utc().isoformat(),
            "versions": library_versions(),
        }
        store.write_meta(spec.name, meta)
    todo = [p for p in plans if p.trial_id not in done]
    n_skipped = sum(len(p.results) for p in plans if p.trial_id in done)

    progress = Progress(total=sum(len(p.results) for p in todo), enabled=show_progress)
    writer = StoreWriter(spec, store, todo, progress)
    try:
        if todo:
            _fit(spec, data, todo, writer, trial_fn)
    finally:
        progress.close()
        wall = time.perf_counter() - t_start
        complete = store.done_trials(spec.name) >= {p.trial_id for p in plans}
        try:
            store.update_meta(
                spec.name,
                status="finished" if complete else "incomplete",
                finished_at=now_utc().isoformat(),
                wall_seconds=round(
                    wall + float(meta.get("wall_seconds", 0.0) if resume else 0.0), 3
                ),
                versions=library_versions(),
            )
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
    configs = [{"trial_id": p.trial_id, "cpus": max(1, int(cpus))} for p in todo]
    scratch = tempfile.mkdtemp(prefix="backdoor-sweep-tune-")
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(configs)},
            tune_config=tune.TuneConfig(
                scheduler=make_scheduler(spec),  # None: Tune's FIFO without per-epoch reports
                reuse_actors=True,
                max_concurrent_trials=spec.execution.max_concurrent_trials,
                trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                trial_dirname_creator=lambda t: t.config["trial"]["trial_id"],
            ),
            run_config=tune.RunConfig(
                name=spec.name,
                storage_path=scratch,
                verbose=0,
                callbacks=[_make_callback(writer)],
                stop=_make_stopper(writer),
                failure_config=tune.FailureConfig(max_failures=spec.execution.max_failures),
            ),
        )
        tuner.fit()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if writer.failure is not None:
        raise SweepError(
            f"{writer.failure}; the sweep stopped (the trials stored so far are kept): "
            f"free space or fix the store, then `{resume_command(spec)}`"
        )


def resume_command(spec: Spec) -> str:
    """The command that finishes this sweep, as it can be pasted (with its store)."""
    return f"backdoor-sweep resume {spec.name} --store {shlex.quote(str(spec.store))}"


def _trainable(trial_fn: Callable[[dict, Any], None] | None):
    if trial_fn is None:
        from trainables.trial import tune_trial as trial_fn

    def backdoor_trial(config, data, results):
        trial = config["trial"]
        trial_fn({**trial, "results": results[trial["trial_id"]]}, data)

    return backdoor_trial
