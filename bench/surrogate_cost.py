"""What caching clean-label PGD surrogates saves: poisoning every attack setting of one seed.

For a clean-label PGD attack (ℓ∞ hardening, 10 steps) on a dataset, the poisoning of every
(poison rate, ε) setting of one seed is timed three ways:

- ``retrain``: every setting trains its own surrogate (what happened before the cache);
- ``cold``: the cache starts empty — the first setting trains, the rest reuse it;
- ``warm``: another process of the node — the surrogate comes from the node's cache folder.

    .venv/bin/python bench/surrogate_cost.py                    # digits 7 vs 1 and mnist_sample 7 vs 1
    .venv/bin/python bench/surrogate_cost.py --smoke
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from trainables.attacks import surrogate_cache as cache  # noqa: E402
from trainables.attacks.clean_label import CleanLabelParams  # noqa: E402
from trainables.attacks.poisoning import CleanLabel  # noqa: E402
from trainables.attacks.triggers import PatchTrigger  # noqa: E402
from trainables.data.datasets import DatasetSpec, load_dataset  # noqa: E402
from trainables.trial import seed_sequence  # noqa: E402


def poison_all(data, surrogate: str, rates, epsilons, *, clear_each: bool) -> float:
    trigger = PatchTrigger(PatchTrigger.Params(trigger_size=3)).fit(
        data.X_train, np.random.default_rng(0)
    )
    t0 = time.perf_counter()
    for rate in rates:
        for eps in epsilons:
            if clear_each:
                cache._process.clear()
            params = CleanLabelParams(poison_rate=rate, epsilon=eps, surrogate=surrogate)
            CleanLabel(params).poison(
                data.X_train, data.y_train, trigger, 1, data.n_classes, seed_sequence(0, "poison")
            )
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    rates, epsilons = (
        ([0.3], [16.0, 32.0]) if args.smoke else ([0.1, 0.3, 0.6], [8.0, 16.0, 32.0, 64.0])
    )
    datasets = ["digits"] if args.smoke else ["digits", "mnist_sample"]
    print("| dataset | surrogate | settings | retrain s | cold cache s | warm cache s |")
    print("|---|---|---:|---:|---:|---:|")
    for name in datasets:
        data = load_dataset(DatasetSpec(name=name, classes=[7, 1]))
        for surrogate in ("logistic", "cnn"):
            with tempfile.TemporaryDirectory() as tmp:
                os.environ[cache.CACHE_ENV] = "off"
                retrain = poison_all(data, surrogate, rates, epsilons, clear_each=True)
                os.environ[cache.CACHE_ENV] = tmp
                cache._process.clear()
                cold = poison_all(data, surrogate, rates, epsilons, clear_each=False)
                cache._process.clear()
                warm = poison_all(data, surrogate, rates, epsilons, clear_each=True)
            n = len(rates) * len(epsilons)
            print(
                f"| {name} 7 vs 1 | {surrogate} | {n} | {retrain:.2f} | {cold:.2f} | {warm:.2f} |"
            )


if __name__ == "__main__":
    main()
