"""The cost of DP-SGD relative to plain SGD for the small CNN on digits (all ten classes).

Per training mode and torch thread count, the wall time of one epoch (median over repeats), for

- ``shuffle``: plain mini-batch SGD on shuffled batches (defence ``none``);
- ``baseline``: the plain-SGD baseline of ``dp_sgd`` (Poisson batches, no clipping, no noise);
- ``clip``: DP-SGD with per-sample clipping only (σ = 0) through Opacus;
- ``dp``: DP-SGD with σ = 1 (clipping + noise + RDP accounting).

The modes are interleaved within each repeat so that machine load hits them alike. Prints a
Markdown table (the ratio column is relative to ``shuffle`` at the same thread count) ready for
BENCHMARKS.md.

    .venv/bin/python bench/dp_cost.py            # 3 epochs x 3 repeats, 1 and 2 threads
    .venv/bin/python bench/dp_cost.py --smoke    # 1 epoch x 1 repeat, 1 thread
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
import torch  # noqa: E402

from trainables.data.datasets import DatasetSpec, load_dataset  # noqa: E402
from trainables.learners.torch_learners import CNN  # noqa: E402

MODES = {
    "shuffle": {},
    "baseline": {"sampling": "poisson"},
    "clip": {"sampling": "poisson", "dp_noise": 0.0, "max_grad_norm": 1.0},
    "dp": {"sampling": "poisson", "dp_noise": 1.0, "max_grad_norm": 1.0},
}


def epoch_seconds(X, y, epochs: int, mode: dict) -> tuple[float, float]:
    """(seconds per epoch, test-free training accuracy) of one fit."""
    learner = CNN(epochs=epochs, batch_size=64, lr=0.05, momentum=0.9, random_state=0, **mode)
    t0 = time.perf_counter()
    learner.fit(X, y)
    seconds = (time.perf_counter() - t0) / epochs
    return seconds, float(np.mean(learner.predict(X) == y))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="1 epoch, 1 repeat, 1 thread")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    if args.smoke:
        args.epochs, args.repeats, args.threads = 1, 1, [1]
    data = load_dataset(DatasetSpec(name="digits"))
    X, y = data.X_train, data.y_train
    print(f"small CNN (width 16) on digits, n = {len(y)}, batch 64; torch {torch.__version__}")
    print("| threads | mode | s / epoch | × shuffle | train acc |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {m: [] for m in MODES}
        accs: dict[str, float] = {}
        epoch_seconds(X[:128], y[:128], 1, MODES["dp"])  # warm-up: imports, allocator
        for _ in range(args.repeats):
            for name, mode in MODES.items():
                sec, acc = epoch_seconds(X, y, args.epochs, mode)
                times[name].append(sec)
                accs[name] = acc
        base = float(np.median(times["shuffle"]))
        for name in MODES:
            med = float(np.median(times[name]))
            print(f"| {threads} | {name} | {med:.3f} | {med / base:.2f} | {accs[name]:.3f} |")


if __name__ == "__main__":
    main()
