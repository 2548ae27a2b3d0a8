"""Launch a sweep on Ray Tune and write its results to the store as trials finish.

``Tuner`` + ``TuneConfig(reuse_actors=True)`` + ``RunConfig``; the dataset reaches the workers once
through ``tune.with_parameters``; each trial reports one result at a time with ``tune.report``. The
driver owns the store: a Tune callback buffers a trial's rows and writes them as one atomic part
file when the trial ends — rows with ``status = "error"`` and the error text if it failed for good.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sweep.errors import SweepError
from sweep.plan import TrialPlan, plan_trials
from sweep.progress import Progress
from sweep.spec import Spec
from sweep.store import Store
from trainables.datasets import load_dataset

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("TUNE_WARN_INSUFFICENT_RESOURCE_THRESHOLD_S", "0")
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


@dataclass
class _Buffer:
    plan: TrialPlan
    rows: dict[str, dict] = field(default_factory=dict)
    curves: dict[str, list[dict]] = field(default_factory=dict)


def _row(sweep: str, trial_id: str, unit: dict, versions: dict, **values: Any) -> dict:
    config = {k: v for k, v in unit.items() if k not in ("curves", "result_id")}
    return {"sweep": sweep, "trial_id": trial_id, "result_id": unit["result_id"], **config, **values, **versions}


class StoreWriter:
    """Tune callback (see `_make_callback`): collect reported results and write part files."""

    def __init__(self, spec: Spec, store: Store, plans: list[TrialPlan], progress: Progress) -> None:
        self.spec, self.store, self.progress = spec, store, progress
        self.buffers = {p.trial_id: _Buffer(p) for p in plans}
        self.versions = library_versions()
        self.n_ok = 0
        self.n_error = 0

    def result(self, trial_id: str, result: dict) -> None:
        buf = self.buffers[trial_id]
        key = result["result_id"]
        unit = next(u for u in buf.plan.units if u["result_id"] == key)
        fresh = key not in buf.rows
        buf.rows[key] = _row(
            self.spec.name,
            trial_id,
            unit,
            self.versions,
            **result["row"],
            status="ok",
            error="",
            node_id=result.get("node_id", ""),
            started_at=datetime.fromtimestamp(result["started_at"], timezone.utc),
            finished_at=datetime.fromtimestamp(result["finished_at"], timezone.utc),
        )
        buf.curves[key] = [
            {"sweep": self.spec.name, "trial_id": trial_id, "result_id": key, **c} for c in result.get("curves", [])
        ]
        if fresh:
            self.progress.advance(1)

    def complete(self, trial_id: str, error: str | None = None) -> None:
        buf = self.buffers[trial_id]
        rows = []
        stamp = now_utc()
        for unit in buf.plan.units:
            if unit["result_id"] in buf.rows:
                rows.append(buf.rows[unit["result_id"]])
            else:
                rows.append(
                    _row(
                        self.spec.name, trial_id, unit, self.versions,
                        status="error", error=(error or "trial ended without reporting this result")[-2000:],
                        node_id="", started_at=stamp, finished_at=stamp,
                    )
                )
                self.progress.advance(1)
        curve_rows = [c for u in buf.plan.units for c in buf.curves.get(u["result_id"], [])]
        if curve_rows:
            self.store.write_part(self.spec.name, "curves", trial_id, curve_rows)
        self.store.write_part(self.spec.name, "trials", trial_id, rows)
        ok = sum(r["status"] == "ok" for r in rows)
        self.n_ok += ok
        self.n_error += len(rows) - ok
        buf.rows.clear()
        buf.curves.clear()


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

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.writer.complete(trial.config["trial"]["trial_id"])

        def on_trial_error(self, iteration, trials, trial, **info):
            self.writer.complete(trial.config["trial"]["trial_id"], error=_trial_error_text(trial))

    return _Cb(writer)


def _trial_error_text(trial) -> str:
    try:
        err = trial.get_error()
        if err is not None:
            return f"{type(err).__name__}: {err}"
    except Exception:
        pass
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        with open(path) as fh:
            return fh.read()
    return "trial failed"


def init_ray(address: str | None) -> bool:
    """Connect to a cluster (``auto`` or HOST:PORT) or start Ray in-process. True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "configure_logging": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs["include_dashboard"] = False
    try:
        ray.init(**kwargs)
    except ConnectionError as err:
        raise SweepError(f"--address must reach a running Ray cluster; got {address!r} ({err})") from None
    return True


def run_sweep(
    spec: Spec,
    *,
    address: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    show_progress: bool = True,
) -> SweepOutcome:
    """Run every result of ``spec`` not yet in its store; return counts and the wall time."""
    store = Store(spec.store)
    t_start = time.perf_counter()
    if store.exists(spec.name):
        if overwrite:
            store.delete_sweep(spec.name)
        elif resume:
            stored = store.read_meta(spec.name)
            if stored.get("spec_digest") != spec.digest():
                raise SweepError(
                    f"--resume needs the spec sweep {spec.name!r} was started with; "
                    "the given spec differs (use `backdoor-sweep resume NAME` or --overwrite)"
                )
        else:
            raise SweepError(
                f"sweep {spec.name!r} already exists in {store.root}; "
                "pass --resume to finish it or --overwrite to replace it"
            )
    data = load_dataset(spec.dataset)  # a missing or bad data folder fails before Ray starts
    plans = plan_trials(spec)
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
    n_skipped = sum(len(p.units) for p in plans if p.trial_id in done)

    progress = Progress(total=sum(len(p.units) for p in todo), enabled=show_progress)
    writer = StoreWriter(spec, store, todo, progress)
    if todo:
        _fit(spec, data, todo, writer, address)
    progress.close()
    wall = time.perf_counter() - t_start
    complete = store.done_trials(spec.name) >= {p.trial_id for p in plans}
    store.update_meta(
        spec.name,
        status="finished" if complete else "incomplete",
        finished_at=now_utc().isoformat(),
        wall_seconds=round(wall + float(meta.get("wall_seconds", 0.0) if resume else 0.0), 3),
        versions=library_versions(),
    )
    return SweepOutcome(spec.name, spec.n_results, writer.n_ok, writer.n_error, n_skipped, wall, store)


def _fit(spec: Spec, data, todo: list[TrialPlan], writer: StoreWriter, address: str | None) -> None:
    from ray import tune

    started = init_ray(address)
    cpus = spec.execution.cpus_per_trial
    trainable = tune.with_resources(
        tune.with_parameters(_trainable(), data=data),
        {"cpu": cpus, "gpu": spec.execution.gpus_per_trial},
    )
    configs = [{"trial_id": p.trial_id, "cpus": max(1, int(cpus)), "units": p.units} for p in todo]
    scratch = tempfile.mkdtemp(prefix="backdoor-sweep-tune-")
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(configs)},
            tune_config=tune.TuneConfig(
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
                failure_config=tune.FailureConfig(max_failures=spec.execution.max_failures),
            ),
        )
        tuner.fit()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if started:
            import ray

            ray.shutdown()


def _trainable():
    from trainables.trial import tune_trial

    def backdoor_trial(config, data):
        tune_trial(config["trial"], data)

    return backdoor_trial
