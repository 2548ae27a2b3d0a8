"""Hand-made sweeps for the analysis tests: real Parquet stores written without running Ray.

Rows carry the ids and configuration of the sweep's plan, so `verify` finds a hand-made store sound.

The metrics are simple closed forms of the configuration plus seeded noise, so a test knows
which configurations should win without hard-coding any number the code computes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from sweep.plan import plan_trials
from sweep.spec import parse_spec
from sweep.store import Store

GRID = {
    "C": [0.1, 1.0, 10.0],
    "gamma": [0.01, 0.1],
    "poison_rate": [0.0, 0.1],
    "trigger_size": [1, 3],
}
SEEDS = [0, 1, 2]
BETAS = [0.0, 0.1, 1.0]


def clean_acc_of(C: float, gamma: float) -> float:
    """Small C under-fits; everything else is accurate."""
    return 0.6 if C == 0.1 else 0.97 + 0.02 * (gamma == 0.1)


def asr_of(C: float, gamma: float, poison_rate: float, trigger_size: int) -> float:
    """Larger C and γ and larger triggers learn the backdoor more; no poison, little ASR."""
    if poison_rate == 0:
        return 0.02
    return min(1.0, 0.1 * np.log10(C * 100) + 2.0 * gamma + 0.1 * trigger_size)


def hand_spec(name: str = "hand", *, curves: bool = False, store: str = "results"):
    """The spec of a hand-made sweep (its plan gives the rows their ids and configuration)."""
    return parse_spec(
        {
            "name": name,
            "description": "hand-made sweep for tests",
            "dataset": {"name": "digits", "classes": [7, 1]},
            "learner": {"name": "svm_rbf", "tol": 1e-7},
            "attack": {"trigger": "patch", "poisoning": "dirty_label", "target": 1},
            "grid": GRID,
            "seeds": SEEDS,
            # the slope columns are the learning curves' (sweep/schema.py): a sweep with a slope
            # has curves on, even when it writes no curve rows
            "curves": {"enabled": curves, "betas": BETAS},
            "store": store,
        }
    )


def trials_frame(
    name: str = "hand",
    with_slope: bool = False,
    noise: float = 0.01,
    seed: int = 0,
    n_errors: int = 0,
    error: str = "ValueError: boom",
    with_curves: bool = False,
) -> pd.DataFrame:
    """One row per (configuration, seed), columns and ids as the store writes them: the ids and
    configuration values of the sweep's plan (so `verify` finds nothing wrong), closed-form metrics."""
    rng = np.random.default_rng(seed)
    rows = []
    for plan in plan_trials(hand_spec(name, curves=with_curves or with_slope)):
        for result in plan.results:
            C, gamma = result["C"], result["gamma"]
            p, size = result["poison_rate"], result["trigger_size"]
            row = {"sweep": name, "trial_id": plan.trial_id, **result}
            row.pop("curves", None)
            row.update(
                {
                    "clean_acc": clean_acc_of(C, gamma) + noise * rng.standard_normal(),
                    "asr": asr_of(C, gamma, p, size) + noise * rng.standard_normal(),
                    "n_poison": int(p * 100),
                    "n_train": 100,
                    "status": "ok",
                    "error": "",
                    "sklearn_version": "1.9.1",
                }
            )
            if with_slope:
                row["slope"] = (
                    0.05 * np.log10(C * 100) + gamma + noise * rng.standard_normal()
                    if p > 0
                    else 0.0
                )
            rows.append(row)
    df = pd.DataFrame(rows)
    for i in range(n_errors):
        df.loc[i, ["status", "error", "clean_acc", "asr"]] = [
            "error",
            error,
            np.nan,
            np.nan,
        ]
    return df


def _hex(text: str) -> str:
    """A store-style id (part files are named by hexadecimal trial ids)."""
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def curves_frame(trials: pd.DataFrame) -> pd.DataFrame:
    """Learning-curve rows (one per result and β) for the attacked results."""
    rows = []
    for r in trials.to_dict("records"):
        if r["n_poison"] == 0:
            continue
        speed = r["C"] * r["gamma"]
        for b in BETAS:
            rows.append(
                {
                    "sweep": r["sweep"],
                    "trial_id": r["trial_id"],
                    "result_id": r["result_id"],
                    "beta": b,
                    "loss_clean": 0.2 + 0.01 * b,
                    "loss_backdoor": 1.0 / (1.0 + 10 * speed * b),
                    "acc_clean": 0.97,
                    "acc_backdoor": min(1.0, 0.1 + speed * b),
                    "rho": 1 + b,
                    "nu": 0.1 * b,
                }
            )
    return pd.DataFrame(rows)


def write_store(root: Path, name: str, raw_spec: dict, trials: pd.DataFrame) -> Store:
    """Write any hand-made sweep: ``sweep.json`` from ``raw_spec`` and ``trials`` as part files
    (one per ``trial_id``; rows get a sweep name, ids and an ``ok`` status where they lack one)."""
    store = Store(root)
    spec = parse_spec({**raw_spec, "name": name, "store": str(root)})
    trials = trials.copy()
    trials["sweep"] = name
    if "trial_id" not in trials:
        trials["trial_id"] = [_hex(f"{name}/{k // 4}") for k in range(len(trials))]
    if "result_id" not in trials:
        trials["result_id"] = [_hex(f"{name}/r{k}") for k in range(len(trials))]
    for col, value in (("status", "ok"), ("error", "")):
        if col not in trials:
            trials[col] = value
    store.write_meta(
        name,
        {
            "name": name,
            "spec": spec.model_dump(mode="json"),
            "spec_digest": spec.digest(),
            "n_results": spec.n_results,
            "n_trials": trials["trial_id"].nunique(),
            "status": "finished",
            "created_at": "2026-01-02T03:04:05+00:00",
            "finished_at": "2026-01-02T03:05:00+00:00",
            "wall_seconds": 12.0,
            "versions": {"python_version": "3.11"},
        },
    )
    for trial_id, part in trials.groupby("trial_id"):
        store.write_part(name, "trials", trial_id, part.to_dict("records"))
    return store


def write_sweep(
    root: Path,
    name: str = "hand",
    *,
    with_slope: bool = False,
    with_curves: bool = False,
    n_errors: int = 0,
    seed: int = 0,
    error: str = "ValueError: boom",
) -> Store:
    """Write a hand-made sweep (sweep.json, trials and optionally curves part files) under ``root``."""
    store = Store(root)
    spec = hand_spec(name, curves=with_curves or with_slope, store=str(root))
    store.write_meta(
        name,
        {
            "name": name,
            "spec": spec.model_dump(mode="json"),
            "spec_digest": spec.digest(),
            "n_results": spec.n_results,
            "n_trials": 6,
            "status": "finished",
            "created_at": "2026-01-02T03:04:05+00:00",
            "finished_at": "2026-01-02T03:05:00+00:00",
            "wall_seconds": 55.0,
            "versions": {"python_version": "3.11", "sklearn_version": "1.9.1"},
        },
    )
    trials = trials_frame(
        name,
        with_slope=with_slope,
        n_errors=n_errors,
        seed=seed,
        error=error,
        with_curves=with_curves,
    )
    for trial_id, part in trials.groupby("trial_id"):
        store.write_part(name, "trials", trial_id, part.to_dict("records"))
    if with_curves:
        for trial_id, part in curves_frame(trials).groupby("trial_id"):
            store.write_part(name, "curves", trial_id, part.to_dict("records"))
    return store
