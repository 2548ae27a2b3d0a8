"""Analytic backdoor learning slope against its finite difference, on the default problem.

For every attacked result of the default sweep (digits 7 vs 1, BadNets patch, dirty-label; poison
rates > 0, every trigger size, seed 0) and each learner's C (and γ) grid, the β = 0 model is fitted
once; then we time

- the analytic route: ``trainables.measures.slope.analytic_slope`` (implicit differentiation / dual KKT),
- the finite-difference route: ``trainables.measures.slope.slope_fd`` (one retrain at a small β, two for
  the one-sided chord), given L_bt(0) from the β = 0 fit both routes share,

interleaved so that machine load hits both alike, and print both θ and their agreement.

    .venv/bin/python bench/slope_cost.py            # the default sweep's grid (svm_rbf) + the others
    .venv/bin/python bench/slope_cost.py --smoke    # a few problems per learner
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sklearn.base import clone  # noqa: E402

from sweep.spec import load_spec  # noqa: E402
from trainables.data.datasets import load_dataset  # noqa: E402
from trainables.learners.registry import make_learner  # noqa: E402
from trainables.measures.slope import (  # noqa: E402
    analytic_slope,
    fd_plan,
    margin_support_vectors,
    mean_loss,
    slope_fd,
)
from trainables.trial import prepare_result  # noqa: E402

LEARNER_GRIDS = {
    "svm_rbf": None,  # the default spec's own C x gamma grid
    "svm_linear": {"C": [0.01, 0.1, 1, 10, 100]},
    "ridge": {"C": [0.01, 0.1, 1, 10, 100]},
    "logistic": {"C": [0.01, 0.1, 1, 10, 100]},
}


def attacked_problems(spec, data, seed: int = 0):
    """(attack config, poisoned set, TS+BT, target) for every attack setting with poison."""
    base, _ = spec.base_config()
    target = data.class_index(base["target"])
    rates = [r for r in spec.grid.get("poison_rate", [0.1]) if r > 0]
    for rate in rates:
        for size in spec.grid.get("trigger_size", [3]):
            cfg = {**base, "poison_rate": rate, "trigger_size": size, "seed": seed}
            result = prepare_result(cfg, data)  # exactly what a sweep result poisons
            poisoned, X_bt = result.poisoned, result.X_bt
            yield cfg, poisoned, X_bt, np.full(len(X_bt), target)


def learner_configs(spec, learner: str):
    grid = LEARNER_GRIDS[learner]
    if grid is None:
        return [
            {"learner": learner, "C": c, "gamma": g}
            for c in spec.grid["C"]
            for g in spec.grid["gamma"]
        ]
    return [{"learner": learner, "C": c} for c in grid["C"]]


def run(learner: str, problems, spec, smoke: bool) -> dict:
    configs = learner_configs(spec, learner)
    if smoke:
        configs = configs[:: max(1, len(configs) // 3)]
    t_an = t_fd = 0.0
    diffs, n_none, n_one_sided, n = [], 0, 0, 0
    for cfg, poisoned, X_bt, y_bt in problems:
        for lcfg in configs:
            proto = make_learner({**cfg, **lcfg}, random_state=0)
            step, overrides = fd_plan(proto)
            model0 = (
                clone(proto)
                .set_params(**overrides)
                .fit_beta(poisoned.X, poisoned.y, poisoned.is_poison, 0.0)
            )
            loss0 = mean_loss(model0, X_bt, y_bt)
            one_sided = hasattr(model0, "dual") and not margin_support_vectors(model0).any()
            t0 = time.process_time()
            an = analytic_slope(model0, poisoned.X, poisoned.y, poisoned.is_poison, X_bt, y_bt)
            t1 = time.process_time()
            fd = slope_fd(
                lambda m=model0: clone(m),
                poisoned.X,
                poisoned.y,
                poisoned.is_poison,
                X_bt,
                y_bt,
                step=step,
                loss0=loss0,
                one_sided=one_sided,
            )
            t2 = time.process_time()
            t_an, t_fd, n = t_an + (t1 - t0), t_fd + (t2 - t1), n + 1
            n_one_sided += one_sided
            if an.value is None or fd.value is None:
                n_none += 1
            else:
                diffs.append(abs(an.value - fd.value))
    d = np.array(diffs) if diffs else np.array([np.nan])
    return {
        "learner": learner,
        "n": n,
        "analytic_ms": 1e3 * t_an / n,
        "fd_ms": 1e3 * t_fd / n,
        "ratio": t_fd / t_an,
        "max_dtheta": float(np.max(d)),
        "median_dtheta": float(np.median(d)),
        "n_undefined": n_none,
        "n_one_sided": n_one_sided,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few problems per learner")
    ap.add_argument(
        "--learners", nargs="*", default=list(LEARNER_GRIDS), choices=list(LEARNER_GRIDS)
    )
    args = ap.parse_args()
    spec = load_spec()
    data = load_dataset(spec.dataset)
    problems = list(attacked_problems(spec, data))
    if args.smoke:
        problems = problems[:2]
    print(
        f"default problem: {spec.name}, {len(problems)} attack settings (poison rate > 0 x trigger size), seed 0; "
        f"train n={len(data.y_train)}, TS+BT n={len(data.y_test)}"
    )
    header = f"{'learner':<11}{'results':>8}{'analytic ms':>13}{'FD ms':>9}{'FD/analytic':>13}{'max|Δθ|':>11}{'median|Δθ|':>12}{'undefined':>10}{'one-sided':>10}"
    print(header)
    for learner in args.learners:
        r = run(learner, problems, spec, args.smoke)
        print(
            f"{r['learner']:<11}{r['n']:>8}{r['analytic_ms']:>13.3f}{r['fd_ms']:>9.2f}{r['ratio']:>12.1f}x"
            f"{r['max_dtheta']:>11.2e}{r['median_dtheta']:>12.1e}{r['n_undefined']:>10}{r['n_one_sided']:>10}"
        )


if __name__ == "__main__":
    main()
