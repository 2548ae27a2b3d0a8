"""The trial: a pure function from a config to metrics.

One *result* (a row of the store) is one grid point and one seed: poison the training set, fit the
learner, measure it (``run_result``). One Ray Tune *trial* runs a list of results that share the
learner configuration — by default every attack setting and seed of one grid cell of learner
hyperparameters — because a Tune trial costs ≈ 0.04 s with actor reuse while one SVM fit on digits
costs milliseconds. ``tune_trial`` reports the results it has finished about once a second, so
progress is live without paying Tune's per-report cost for every millisecond-sized result.
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
    """One result before training: the poisoned set, the unfitted learner and its defence, TS+BT."""

    seed: int
    target: int
    trigger: Trigger
    poisoned: Poisoned
    learner: object
    defence: Defence
    X_bt: np.ndarray
    test: BackdoorTest

    def train(self, data: Dataset) -> dict:
        """Fit the learner in place through the defence; returns the defence's columns."""
        return self.defence.train(
            self.learner, self.poisoned, data, seed_sequence(self.seed, "defence"), self.test
        )


def prepare_result(config: dict, data: Dataset) -> PreparedResult:
    """Everything of one (configuration, seed) that is seeded before training — what `run_result`
    trains, and what ``backdoor-sweep explain`` rebuilds exactly."""
    seed = int(config["seed"])
    target = data.class_index(config["target"])
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
    return PreparedResult(seed, target, trigger, poisoned, learner, defence, X_bt, test)


def run_result(config: dict, data: Dataset) -> ResultRows:
    """Poison, fit and measure one (configuration, seed). Returns the store row and curve rows."""
    result = prepare_result(config, data)
    poisoned, learner, X_bt, target = result.poisoned, result.learner, result.X_bt, result.target
    recorder = None
    if config.get("dynamics"):  # per-epoch losses of networks (trainables/measures/dynamics.py)
        from trainables.measures.dynamics import watch_dynamics

        recorder = watch_dynamics(config, learner, poisoned, data)
    t0 = time.perf_counter()
    defence_info = result.train(data)
    fit_seconds = time.perf_counter() - t0

    pred_clean = learner.predict(data.X_test)
    pred_trig = learner.predict(X_bt)
    row = {
        **attack_metrics(data.y_test, pred_clean, pred_trig, target),
        "asr_definition": ASR_DEFINITION,
        "n_poison": poisoned.n_poison,
        "n_train": int(len(poisoned.y)),
        "n_test": int(len(data.y_test)),
        "fit_seconds": fit_seconds,
        **poisoned.info,
        **defence_info,
    }
    result = ResultRows(row=row, dynamics=recorder.rows if recorder is not None else [])
    if config.get("influence_k"):  # influential_poison_frac (trainables/measures/influence.py)
        from trainables.measures.influence import influence_for_result

        row.update(influence_for_result(config, learner, poisoned, data, X_bt, target))
    if config.get(
        "curves"
    ):  # backdoor learning curve, slopes, ρ and ν (trainables/measures/curves.py)
        from trainables.measures.curves import curve_for_result

        summary, result.curves = curve_for_result(config, poisoned, data, X_bt, target)
        row.update(summary)
    return result


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

    cpus = int(config.get("cpus", 1))
    every = float(config.get("report_every_s", 1.0))
    node = _node_id()
    results = config["results"]
    batch: list[dict] = []
    last = time.monotonic()
    # generators and the like are computed once per store (``cache_dir``), not once per result
    with threadpool_limits(limits=cpus), cache_root(config.get("cache_dir")):
        for i, result in enumerate(results):
            t0 = time.time()
            res = run_result(result, data)
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
                report = {"results": batch, "node_id": node}
                if summarise is not None:
                    report.update(summarise(batch))
                tune.report(report)
                batch, last = [], time.monotonic()


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray
        return ""
