"""The trial: a pure function from a config to metrics.

One *result* (a row of the store) is one grid point and one seed: poison the training set, fit the
learner, measure it (``run_result``). One Ray Tune *trial* runs a list of results that share the
learner configuration — by default every attack setting and seed of one grid cell of learner
hyperparameters — because a Tune trial costs ≈ 0.04 s with actor reuse while one SVM fit on digits
costs milliseconds. ``tune_trial`` reports the results it has finished about once a second, so
progress is live without paying Tune's per-report cost for every millisecond-sized result.

Under an ``execution.scheduler`` a trial is one result of a network learner, and it also reports
after every epoch (`trainables.epochs`): a validation part of the training split is held out
(``val_fraction``) and the scheduler may stop the trial between epochs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from trainables.attacks.generator_cache import cache_root
from trainables.attacks.poisoning import Poisoned, make_poisoning
from trainables.attacks.triggers import Trigger, make_trigger
from trainables.data.datasets import Dataset
from trainables.defences import BackdoorTest, Defence, make_defence
from trainables.epochs import EPOCH_METRICS, EpochReporter, split_validation
from trainables.learners import make_learner
from trainables.measures.metrics import ASR_DEFINITION, attack_metrics


@dataclass
class ResultRows:
    row: dict
    curves: list[dict] = field(default_factory=list)
    #: per-epoch losses of networks when the spec asks (trainables/measures/dynamics.py)
    dynamics: list[dict] = field(default_factory=list)


def seed_sequence(seed: int, *parts: str) -> np.random.Generator:
    """Independent generators per purpose (trigger, poisoning, test trigger) from one seed."""
    tags = [int.from_bytes(p.encode()[:8].ljust(8, b"\0"), "little") for p in parts]
    return np.random.default_rng([int(seed), *tags])


@dataclass
class PreparedResult:
    """One result before training: the poisoned set, the unfitted learner and its defence, TS+BT.

    ``data`` is the dataset the result trains on: the given one, or — with ``val_fraction`` — the
    same with a smaller training split, the rest held out in ``validation`` (clean and triggered).
    """

    seed: int
    target: int
    trigger: Trigger
    poisoned: Poisoned
    learner: object
    defence: Defence
    X_bt: np.ndarray
    test: BackdoorTest
    data: Dataset
    validation: BackdoorTest | None = None

    def train(self, data: Dataset | None = None) -> dict:
        """Fit the learner in place through the defence; returns the defence's columns."""
        return self.defence.train(
            self.learner,
            self.poisoned,
            self.data if data is None else data,
            seed_sequence(self.seed, "defence"),
            self.test,
        )


def prepare_result(config: dict, data: Dataset) -> PreparedResult:
    """Everything of one (configuration, seed) that is seeded before training — what `run_result`
    trains, and what ``backdoor-sweep explain`` rebuilds exactly."""
    seed = int(config["seed"])
    target = data.class_index(config["target"])
    X_val = y_val = None
    if config.get("val_fraction"):  # held out before anything else: clean validation samples
        data, X_val, y_val = split_validation(
            data, float(config["val_fraction"]), seed_sequence(seed, "validation")
        )
    trigger = make_trigger(config).fit(data.X_train, seed_sequence(seed, "trigger"))
    poisoning = make_poisoning(config)
    poisoned = poisoning.poison(
        data.X_train,
        data.y_train,
        trigger,
        target,
        data.n_classes,
        seed_sequence(seed, "poison"),
        classes=data.classes,
    )
    learner = make_learner(config, random_state=seed)
    defence = make_defence(config)
    X_bt = trigger.apply(data.X_test, seed_sequence(seed, "test"))
    test = BackdoorTest(data.X_test, data.y_test, X_bt, target)  # a defence may measure mid-way
    validation = None
    if X_val is not None:
        X_val_bt = trigger.apply(X_val, seed_sequence(seed, "validation-trigger"))
        validation = BackdoorTest(X_val, y_val, X_val_bt, target)
    return PreparedResult(
        seed, target, trigger, poisoned, learner, defence, X_bt, test, data, validation
    )


def run_result(
    config: dict, data: Dataset, send: Callable[[dict], None] | None = None
) -> ResultRows:
    """Poison, fit and measure one (configuration, seed). Returns the store row and curve rows.

    With ``val_fraction`` in the configuration, ``send`` receives the metrics of every epoch but
    the last (`trainables.epochs`); the last epoch's are columns of the row.
    """
    result = prepare_result(config, data)
    if (config.get("curves") or {}).get("probe"):
        return _slope_probe(config, result)
    data = result.data  # the training split the result really used
    poisoned, learner, X_bt, target = result.poisoned, result.learner, result.X_bt, result.target
    recorder = reporter = None
    if config.get("dynamics"):  # per-epoch losses of networks (trainables/measures/dynamics.py)
        from trainables.measures.dynamics import watch_dynamics

        recorder = watch_dynamics(config, learner, poisoned, data)
    if result.validation is not None:
        previous = getattr(learner, "on_epoch", None)
        reporter = EpochReporter(result.validation, send, int(learner.epochs), previous)
        learner.on_epoch = reporter
    t0 = time.perf_counter()
    defence_info = result.train(data)
    fit_seconds = time.perf_counter() - t0

    row = {**measured_row(result, learner, len(poisoned.y), fit_seconds, 1), **defence_info}
    if reporter is not None:
        row["n_val"] = int(len(result.validation.y))
        row.update({"epoch": None, **dict.fromkeys(EPOCH_METRICS), **reporter.last})
    result = ResultRows(row=row, dynamics=recorder.rows if recorder is not None else [])
    if config.get("influence_k"):  # influential_poison_frac (trainables/measures/influence.py)
        from trainables.measures.influence import influence_for_result

        row.update(influence_for_result(config, learner, poisoned, data, X_bt, target))
    if config.get(
        "curves"
    ):  # backdoor learning curve, slopes, ρ and ν (trainables/measures/curves.py)
        from trainables.measures.curves import curve_for_result

        curve = curve_for_result(config, poisoned, data, X_bt, target)
        result.curves = curve.rows
        row.update(curve.summary(), n_fits=1 + curve.fits)
    return result


def _slope_probe(config: dict, result: PreparedResult) -> ResultRows:
    """Stage one of a slope screen (``curves.probe``; `sweep.screening`): one fit per result.

    The β = 0 model of the probe's poisoned training set — its clean samples, fitted alone at the
    finite difference's precision — gives everything the screen ranks by: the clean accuracy and
    the analytic slope θ toward the probe's poison (docs/science.md §6). The row's metrics are that
    model's; ``n_poison`` is the probe's poison, which it was not trained on; no defence runs.
    """
    from trainables.measures.curves import learning_curve

    data, poisoned, target = result.data, result.poisoned, result.target
    t0 = time.perf_counter()
    curve = learning_curve(
        lambda: make_learner(config, random_state=result.seed),
        poisoned.X,
        poisoned.y,
        poisoned.is_poison,
        data.X_test,
        data.y_test,
        result.X_bt,
        target,
        betas=(0.0,),
        cross_check=False,
    )
    fit_seconds = time.perf_counter() - t0
    n_clean = int(np.count_nonzero(~np.asarray(poisoned.is_poison, dtype=bool)))
    row = measured_row(result, curve.model0, n_clean, fit_seconds, curve.fits)
    return ResultRows(row={**row, **curve.summary()}, curves=curve.rows)


def measured_row(
    result: PreparedResult, model, n_train: int, fit_seconds: float, n_fits: int
) -> dict:
    """The columns every result's row has: the fitted ``model``'s attack metrics on the test
    split and its triggered copy, what it trained on, and what the training cost."""
    data, poisoned = result.data, result.poisoned
    return {
        **attack_metrics(
            data.y_test, model.predict(data.X_test), model.predict(result.X_bt), result.target
        ),
        "asr_definition": ASR_DEFINITION,
        "n_poison": poisoned.n_poison,
        "n_train": int(n_train),
        "n_test": int(len(data.y_test)),
        "fit_seconds": fit_seconds,
        "n_fits": n_fits,
        **poisoned.info,
    }


def tune_trial(
    config: dict, data: Dataset, summarise: Callable[[list[dict]], dict] | None = None
) -> None:
    """Ray Tune entry point: run every result of this trial and report them in batches.

    Finished results are reported together at most every ``report_every_s`` seconds (default 1 s)
    and at the end: each ``tune.report`` is a round trip to the driver plus a pass through Tune's
    result processing, which costs more than a result of a small learner (BENCHMARKS.md).
    ``summarise(batch)``, when given, adds metrics to each report — a search's objective values
    over the results finished so far, which its searcher reads from the trial's last report.
    """
    from ray import tune
    from threadpoolctl import threadpool_limits

    quiet_shutdown()
    cpus = int(config.get("cpus", 1))
    every = float(config.get("report_every_s", 1.0))
    node = _node_id()
    results = config["results"]
    batch: list[dict] = []
    last = time.monotonic()

    def send(metrics: dict) -> None:  # one epoch of a network trial under a scheduler
        tune.report({**metrics, "node_id": node})

    # generators and the like are computed once per store (``cache_dir``), not once per result
    with threadpool_limits(limits=cpus), cache_root(config.get("cache_dir")):
        for i, result in enumerate(results):
            t0 = time.time()
            res = run_result(result, data, send)
            batch.append(
                {
                    "result_id": result["result_id"],
                    "row": res.row,
                    "curves": res.curves,
                    "dynamics": res.dynamics,
                    "started_at": t0,
                    "finished_at": time.time(),
                }
            )
            if i == len(results) - 1 or time.monotonic() - last >= every:
                # the last epoch's metrics go along, so a scheduler sees its metric in every report
                epoch = {k: res.row[k] for k in ("epoch", *EPOCH_METRICS) if k in res.row}
                report = {"results": batch, "node_id": node, **epoch}
                if summarise is not None:
                    report.update(summarise(batch))
                tune.report(report)
                batch, last = [], time.monotonic()


def quiet_shutdown() -> None:
    """Keep a reused trial actor's shutdown quiet.

    Tune ends an idle reused actor with SIGTERM; Ray's handler raises ``SystemExit``, and when
    that lands inside a garbage-collector callback Python cannot raise it and prints it instead —
    a traceback on the user's terminal, forwarded by Ray, about a worker that is exiting as
    asked. This hook drops exactly those (an unraisable ``SystemExit``) and passes anything else
    on to the hook it replaces. Installed once per worker process.
    """
    import sys

    if getattr(sys.unraisablehook, "quiet_shutdown", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, SystemExit) or unraisable.exc_type is SystemExit:
            return
        previous(unraisable)

    hook.quiet_shutdown = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray
        return ""
