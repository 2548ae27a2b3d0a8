"""One short check of the network learners on a GPU, without Ray: determinism, bf16, throughput.

Run from the repository root on a machine with CUDA (a few minutes on one H200):

    python bench/gpu_check.py            # --quick: smaller sizes, one repeat

It calls the learners directly (Ray is not needed; the learners import pydantic and
scikit-learn) and prints a compact report:

1. determinism — ``cnn``, ``resnet18`` and ``mlp`` fitted twice with the same seed,
   ``deterministic=True``: identical predicted probabilities and weights? (and, for comparison,
   twice with ``deterministic=False``: do they differ?);
2. precision — images/s of the project's loop in fp32 and bf16, and bf16's agreement with fp32;
3. the project's loop against a minimal plain PyTorch loop (`bench/gpu_throughput.py`): images/s
   and their ratio (target ≥ 0.9), deterministic on and off;
4. no waiting for the device per batch — synchronising calls counted by torch's sync debug mode
   during a 3-epoch fit.

Exit code 0 when the deterministic runs are identical and the loop does not sync per batch, 1 if
not, 2 without CUDA.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def say(text: str) -> None:
    print(text, flush=True)


def fit(name: str, X, y, *, deterministic=True, precision="fp32", epochs=2):
    from trainables.learners import make_learner

    config = {"learner": name, "epochs": epochs, "batch_size": 128, "lr": 0.05}
    config.update(deterministic=deterministic, precision=precision)
    if name != "mlp":
        config["augment"] = True  # the augmentation draws on the device too
    learner = make_learner(config, random_state=3)
    with mock.patch("trainables.learners.torch_learners.ray_resources", return_value=(None, True)):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        learner.fit(X, y)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return learner, learner.predict_proba(X[:2000]), seconds


def same_weights(a, b) -> bool:
    return all(
        torch.equal(p, q) for p, q in zip(a.model_.parameters(), b.model_.parameters(), strict=True)
    )


def check_determinism(X, y, epochs: int) -> bool:
    say("\n1. determinism (same seed, same GPU, two fits each)")
    ok = True
    for name in ("cnn", "resnet18", "mlp"):
        try:
            a, pa, ta = fit(name, X, y, epochs=epochs)
            b, pb, tb = fit(name, X, y, epochs=epochs)
        except Exception as err:  # e.g. an operation without a deterministic CUDA kernel
            say(
                f"   {name:9s} deterministic=true FAILED: {type(err).__name__}: {err}".splitlines()[
                    0
                ]
            )
            ok = False
            continue
        equal = bool(np.array_equal(pa, pb)) and same_weights(a, b)
        ok &= equal
        c, pc, tc = fit(name, X, y, deterministic=False, epochs=epochs)
        d, pd_, td = fit(name, X, y, deterministic=False, epochs=epochs)
        differ = not (np.array_equal(pc, pd_) and same_weights(c, d))
        say(
            f"   {name:9s} deterministic=true: identical={equal} ({ta:.2f} s, {tb:.2f} s); "
            f"deterministic=false: runs differ={differ} ({tc:.2f} s, {td:.2f} s); "
            f"max |Δp| det vs not {np.abs(pa - pc).max():.2e}"
        )
    return ok


def check_precision(X, y, epochs: int) -> None:
    say("\n2. precision (project loop, deterministic=true)")
    if not torch.cuda.is_bf16_supported():
        say("   bf16 not supported on this GPU: skipped")
        return
    for name in ("cnn", "resnet18"):
        _, p32, t32 = fit(name, X, y, epochs=epochs)
        _, p16, t16 = fit(name, X, y, precision="bf16", epochs=epochs)
        n = len(y) * epochs
        say(
            f"   {name:9s} fp32 {n / t32:8.0f} img/s, bf16 {n / t16:8.0f} img/s "
            f"(× {t32 / t16:.2f}); predictions agree on {np.mean(p32.argmax(1) == p16.argmax(1)):.3f}"
        )


def check_loops(quick: bool) -> bool:
    import gpu_throughput as bench

    say("\n3. project loop vs plain PyTorch loop (images/s, median of repeats)")
    precisions = ["fp32", "bf16"] if torch.cuda.is_bf16_supported() else ["fp32"]
    worst = float("inf")
    for case in bench.cases(["cuda"], precisions, [True, False], smoke=False):
        if quick:
            case.n = 4096
        r = bench.measure(case, repeats=1 if quick else 3)
        worst = min(worst, r["ratio"]) if not case.deterministic else worst
        say(
            f"   {case.model:9s} {case.precision} deterministic={str(case.deterministic).lower():5s} "
            f"project {r['project']:8.0f}  plain {r['plain']:8.0f}  ratio {r['ratio']:.2f}"
        )
    say(
        f"   worst ratio with deterministic=false (same kernels as plain): {worst:.2f} (target 0.9)"
    )
    return True


def count_syncs(X, y, epochs: int) -> list[str]:
    """Synchronising calls (torch's sync debug mode) of one ``cnn`` fit of ``epochs`` epochs."""
    from trainables.learners.torch_learners import CNN

    learner = CNN(epochs=epochs, batch_size=64, lr=0.05, augment=True, random_state=0)
    with mock.patch("trainables.learners.torch_learners.ray_resources", return_value=(None, True)):
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                learner.fit(X, y)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [
        str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()
    ]


def check_syncs(X, y) -> bool:
    say("\n4. waiting for the device inside the epoch loop")
    one, three = count_syncs(X, y, 1), count_syncs(X, y, 3)
    per_epoch = -(-len(y) // 64)
    extra = len(three) - len(one)
    ok = extra <= 2
    say(
        f"   {len(one)} synchronising calls in a 1-epoch fit, {len(three)} in a 3-epoch fit "
        f"({per_epoch} batches an epoch): {extra} more for 2 more epochs; ok={ok}"
    )
    for line in sorted(set(three))[:3]:
        say(f"     e.g. {line[:140]}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4,096 images, one repeat")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        say("no CUDA device: nothing to check")
        return 2
    try:
        import pydantic  # noqa: F401  (the learners' parameter declarations need it)
    except ImportError:
        say("pydantic is missing: the learners import it (pip install pydantic)")
        return 2
    import gpu_throughput as bench

    t0 = time.perf_counter()
    say(
        f"GPU check: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA "
        f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}; bf16 "
        f"{torch.cuda.is_bf16_supported()}"
    )
    X, y = bench.images(4096 if args.quick else 10000)
    epochs = 1 if args.quick else 2
    ok = check_determinism(X, y, epochs)
    check_precision(X, y, epochs)
    check_loops(args.quick)
    ok &= check_syncs(X[:4096], y[:4096])
    say(f"\n{'PASS' if ok else 'FAIL'} in {time.perf_counter() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
