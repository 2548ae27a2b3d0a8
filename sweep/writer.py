"""Write a running sweep's results to the store: the driver-side Tune callback.

Each trial reports its finished results in batches (``tune.report``); `StoreWriter` buffers a
trial's rows and writes them as one atomic part file when the trial ends — rows with
``status = "error"`` and the error text if it failed for good (after ``execution.max_failures``
retries: a raising trial, or a node that died). A part file appears only for a finished trial, so a
driver killed mid-sweep leaves whole trials or nothing, and a retried trial's results are keyed by
result id: written once.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from backdoor_sweep.errors import SweepError
from sweep.plan import TrialPlan
from sweep.progress import Progress
from sweep.schema import spec_schemas
from sweep.spec import Spec
from sweep.store import Store


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
    """Tune callback (see `make_callback`): collect reported results and write part files."""

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

    def add_plan(self, plan: TrialPlan) -> None:
        """Take a trial planned while the sweep runs (a configuration an adaptive searcher drew)."""
        self.buffers[plan.trial_id] = _Buffer(plan)
        self.results[plan.trial_id] = {u["result_id"]: u for u in plan.results}

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


def make_callback(writer: StoreWriter):
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


def make_stopper(writer: StoreWriter):
    from ray.tune import Stopper

    class _StopOnStoreFailure(Stopper):
        """Stops the whole sweep once a store write has failed (nothing more can be kept)."""

        def __init__(self, writer: StoreWriter) -> None:
            self.writer = writer

        def __call__(self, trial_id, result) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.writer.failure is not None

        def __getstate__(self):  # the writer lives in the driver only (see `make_callback`)
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
