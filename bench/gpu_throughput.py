"""Images per second of the project's training loop against a minimal plain PyTorch loop.

For ``cnn`` (the small CNN, width 32) and ``resnet18`` (ResNet-18 for small images), the same
model, data, batch size, optimiser (SGD, momentum 0.9) and precision trained two ways:

- ``project``: the learner's ``fit`` — what a sweep runs (seeding, the device move, the weighted
  batch objective, the epoch loop of `trainables.learners.training`), deterministic or not;
- ``plain``: the anchor — the same module on the same device (channels-last on CUDA, as the
  project does), the data moved once, a permutation per epoch, ``cross_entropy`` under the same
  autocast, backward, step.

Throughput = training images / wall seconds of a whole fit (the project's set-up included),
median over repeats, the two loops interleaved (ABBA) so machine load hits both alike. The target is
project ≥ 0.9 × plain. On the CPU the sizes are small (the machine has 2 shared cores); on a GPU
they are those of BENCHMARKS.md's GPU table (10,000 images 32×32×3, batch 128). Prints a Markdown
table with the device named.

    .venv/bin/python bench/gpu_throughput.py                 # CPU, and the GPU when there is one
    .venv/bin/python bench/gpu_throughput.py --smoke         # one tiny repeat per case (tests)
    .venv/bin/python bench/gpu_throughput.py --device cuda --precision fp32 bf16
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

#: (images, epochs, batch) per model and device kind
SIZES = {
    ("cnn", "cpu"): (2048, 2, 128),
    ("resnet18", "cpu"): (256, 1, 64),
    ("cnn", "cuda"): (10000, 3, 128),
    ("resnet18", "cuda"): (10000, 2, 128),
}
SMOKE = {"cnn": (256, 1, 64), "resnet18": (64, 1, 32)}
CNN_WIDTH, CNN_HIDDEN = 32, 64


@dataclass
class Case:
    model: str
    device: str
    precision: str
    deterministic: bool
    n: int
    epochs: int
    batch: int


def images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n colour 32×32 images in [0, 1] and 10 labels, with a class signal so training is real."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n)
    X = rng.uniform(0, 0.5, size=(n, 32, 32, 3))
    X[np.arange(n), 3 * y, :, :] += 0.5  # a bright row whose position is the class
    return X.astype(np.float32), y


def learner(case: Case):
    """The project's learner for ``case`` (what a sweep builds)."""
    from trainables.learners.torch_learners import CNN, ResNet18

    common = dict(
        epochs=case.epochs,
        batch_size=case.batch,
        lr=0.05,
        momentum=0.9,
        precision=case.precision,
        deterministic=case.deterministic,
        random_state=0,
    )
    if case.model == "cnn":
        return CNN(cnn_width=CNN_WIDTH, hidden_units=CNN_HIDDEN, **common)
    return ResNet18(**common)


def on_device(case: Case):
    """A context in which the learner trains on ``case.device`` (its own rule: Ray's GPU)."""
    from unittest import mock

    gpu = case.device == "cuda"
    return mock.patch("trainables.learners.torch_learners.ray_resources", return_value=(None, gpu))


def project_seconds(case: Case, X: np.ndarray, y: np.ndarray) -> float:
    model = learner(case)
    with on_device(case):
        sync(case)
        t0 = time.perf_counter()
        model.fit(X, y)
        sync(case)
        return time.perf_counter() - t0


def plain_seconds(case: Case, X: np.ndarray, y: np.ndarray) -> float:
    """The anchor loop: nothing but what training needs."""
    from trainables.learners.networks import SmallCNN, SmallImageResNet18

    device = torch.device(case.device)
    torch.manual_seed(0)
    sync(case)
    t0 = time.perf_counter()
    if case.model == "cnn":
        net = SmallCNN(3, 10, width=CNN_WIDTH, hidden=CNN_HIDDEN)
    else:
        net = SmallImageResNet18(3, 10)
    net = net.to(device)
    Xt = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2))).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
        Xt = Xt.contiguous(memory_format=torch.channels_last)
    yt = torch.as_tensor(y, device=device)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    cast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=case.precision == "bf16")
    net.train()
    for _ in range(case.epochs):
        order = torch.randperm(len(yt), device=device)
        for start in range(0, len(yt), case.batch):
            idx = order[start : start + case.batch]
            opt.zero_grad(set_to_none=True)
            with cast:
                loss = torch.nn.functional.cross_entropy(net(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    sync(case)
    return time.perf_counter() - t0


def sync(case: Case) -> None:
    if case.device == "cuda":
        torch.cuda.synchronize()


def measure(case: Case, repeats: int) -> dict:
    """Median images/s of both loops (interleaved, after one warm-up of each) and their ratio."""
    X, y = images(case.n)
    small = max(case.batch, 64)
    warm = Case(**{**case.__dict__, "n": small, "epochs": 1})
    project_seconds(warm, X[:small], y[:small])
    plain_seconds(warm, X[:small], y[:small])
    project, plain = [], []
    for r in range(repeats):  # ABBA order: a drift in machine load hits both loops alike
        first, second = (
            (project_seconds, plain_seconds) if r % 2 == 0 else (plain_seconds, project_seconds)
        )
        a, b = first(case, X, y), second(case, X, y)
        project.append(a if first is project_seconds else b)
        plain.append(b if first is project_seconds else a)
    images_seen = case.n * case.epochs
    p, a = images_seen / statistics.median(project), images_seen / statistics.median(plain)
    return {"project": p, "plain": a, "ratio": p / a}


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads"


def cases(devices, precisions, determinism, smoke: bool) -> list[Case]:
    out = []
    for device in devices:
        for model in ("cnn", "resnet18"):
            n, epochs, batch = SMOKE[model] if smoke else SIZES[(model, device)]
            for precision in precisions:
                if precision == "bf16" and device == "cpu":
                    continue  # sweeps refuse bf16 on the CPU (emulated there, slower than fp32)
                for det in determinism:
                    out.append(Case(model, device, precision, det, n, epochs, batch))
    return out


def main(argv: list[str] | None = None) -> list[tuple[Case, dict]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    ap.add_argument(
        "--device", nargs="+", default=None, help="cpu and/or cuda (default: both if any)"
    )
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--deterministic", nargs="+", default=["true", "false"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: as is)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    determinism = [d.lower() in ("1", "true", "yes") for d in args.deterministic]
    repeats = 1 if args.smoke else args.repeats
    results = []
    for device in devices:
        print(f"\n{device}: {device_name(device)}; torch {torch.__version__}")
        print(
            "| model | precision | deterministic | images | epochs | batch | project img/s "
            "| plain img/s | project / plain |"
        )
        print("|---|---|---|---:|---:|---:|---:|---:|---:|")
        for case in cases([device], args.precision, determinism, args.smoke):
            r = measure(case, repeats)
            results.append((case, r))
            print(
                f"| {case.model} | {case.precision} | {str(case.deterministic).lower()} | "
                f"{case.n} | {case.epochs} | {case.batch} | {r['project']:.0f} | "
                f"{r['plain']:.0f} | {r['ratio']:.2f} |",
                flush=True,
            )
    return results


if __name__ == "__main__":
    main()
