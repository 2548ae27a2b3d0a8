"""Mini-batch training of a torch model: batches, augmentation, weights, DP-SGD, devices.

Two ways to draw batches:

- ``shuffle`` (default): a seeded permutation cut into batches of ``batch_size``; each batch's loss
  is normalised by its own size (a plain mean).
- ``poisson`` (used by the ``dp_sgd`` defence): k = ⌈n/batch_size⌉ steps an epoch, each sample
  joining a step independently with rate q = 1/k (Opacus's ``UniformWithReplacementSampler`` with
  its step count set to k: left to itself it runs int(1/q) steps, and int(1/(1/k)) is k − 1 for
  k = 93, 99, 105, …). The summed loss is divided by the *expected* batch size ⌊n/k⌋. With
  ``max_grad_norm`` set, Opacus's ``GradSampleModule`` and ``DPOptimizer`` clip per-sample
  gradients to that norm, add Gaussian noise of std σ·c to their sum and divide by the same
  expected batch size; an RDP accountant is charged q for every step drawn, so ``epsilon`` is the
  accountant's ε for the q and the number of steps the training really used (docs/science.md
  §8). Without ``max_grad_norm`` the same batches and normalisation are used with ordinary
  gradients: the plain-SGD baseline with the same effective learning rate (its update equals
  DP-SGD's with σ = 0 and no clipping — tested).

Devices: the data are moved to the device once per fit and batches are
indexed there; the epoch loop never waits for the device (no ``.item()`` per batch: the epoch's
mean loss stays a device tensor until someone reads ``epoch_loss``). ``deterministic`` (default)
selects deterministic algorithms (`determinism`): the same seed on the same device gives the same
model; off, cuDNN autotunes. ``precision="bf16"`` runs forward passes under bfloat16 autocast
(weights and optimiser stay fp32). Convolutional networks use channels-last memory on CUDA.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainables.learners.regularisers import Regularisers, batch_objective

#: per-batch anchor weights: (batch indices, normaliser) -> weights
WeightFn = Callable[[torch.Tensor, float], torch.Tensor]
PRECISIONS = ("fp32", "bf16")
#: cuBLAS needs a fixed workspace for deterministic results (NVIDIA's documented setting)
CUBLAS_WORKSPACE = ":4096:8"


def images_to_tensor(X: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(n, H, W) grey or (n, H, W, C) colour floats to an (n, C, H, W) float32 tensor."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 2:  # already vectors: one row of pixels
        X = X[:, None, None, :]
    elif X.ndim == 3:
        X = X[:, None, :, :]
    elif X.ndim == 4:
        X = np.transpose(X, (0, 3, 1, 2))
    else:
        raise ValueError(f"images must have 2 to 4 dimensions; got shape {X.shape}")
    return torch.from_numpy(np.ascontiguousarray(X)).to(device)


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero-padding by max(1, H // 8) pixels, and a random horizontal flip.

    The offsets are drawn with ``generator`` on its own device and used where ``x`` lives.
    """
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    gdev = generator.device
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev).to(x.device)
    flip = (torch.rand(n, generator=generator, device=gdev) < 0.5).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)[None, :]
    cols = ox[:, None] + torch.arange(w, device=x.device)[None, :]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous(memory_format=_memory_format(x))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels-last if ``x`` is stored so (a one-channel image counts as both: contiguous)."""
    cl = (
        x.dim() == 4
        and not x.is_contiguous()
        and x.is_contiguous(memory_format=torch.channels_last)
    )
    return torch.channels_last if cl else torch.contiguous_format


@contextmanager
def determinism(deterministic: bool) -> Iterator[None]:
    """Deterministic algorithms on (cuDNN deterministic, no autotuning, torch's deterministic
    mode, cuBLAS's fixed workspace) or off (cuDNN autotuning) for the duration of the block.

    torch's switches are process-wide, so the previous values are restored afterwards.
    ``CUBLAS_WORKSPACE_CONFIG`` is set (unless already set) where training starts, before any
    cuBLAS handle of this fit exists, and stays set: it only fixes the workspace size.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    cudnn = torch.backends.cudnn
    saved = (
        cudnn.deterministic,
        cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    cudnn.deterministic, cudnn.benchmark = deterministic, not deterministic
    switch = saved[2] != deterministic or saved[3]  # the first switch costs an import (~1 s)
    if switch:
        torch.use_deterministic_algorithms(deterministic)
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved[0], saved[1]
        if switch:
            torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def autocast(device: torch.device, precision: str):
    """bfloat16 autocast for ``precision="bf16"``; a no-op context for fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16"
    )


@dataclass
class TrainConfig:
    """Everything a training run needs besides the model and the data."""

    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    augment: bool = False
    regularisers: Regularisers = Regularisers()
    sampling: str = "shuffle"
    dp_noise: float = 0.0
    max_grad_norm: float | None = None
    seed: int = 0
    precision: str = "fp32"


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def generators(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """Independent seeded generators for batch order, augmentation, regularisers and DP noise.

    Batch order draws on the CPU (the same batches on every device); augmentation, the
    regularisers' draws and DP noise draw on the training device, so none crosses to it per batch.
    """
    names = ("order", "augment", "regularisers", "noise")
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(names), dtype=np.uint64)
    out = {}
    for name, s in zip(names, seeds, strict=True):
        dev = torch.device("cpu") if name == "order" else device
        out[name] = torch.Generator(device=dev).manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF)
    return out


def poisson_rate(n: int, batch_size: int) -> tuple[float, int, int]:
    """(q, steps, expected batch size): q = 1/k for k = ⌈n/b⌉ steps an epoch, and ⌊n/k⌋ (≥ 1).

    In integers: Opacus's ``int(n * q)`` truncates n·(1/k) = 63.999… to 63 for n = 6272, k = 98.
    """
    steps = -(-n // batch_size)
    return 1.0 / steps, steps, max(1, n // steps)


class Trainer:
    """Trains one model in place; keeps the RDP accountant (for ε) when DP-SGD is on."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device) -> None:
        self.model, self.cfg, self.device = model, cfg, device
        self.gens = generators(cfg.seed, device)
        self.accountant = None
        self.gsm = None
        #: batches drawn (Poisson: empty ones too — each one is a step of the accountant)
        self.steps = 0
        self._epoch_loss: torch.Tensor | None = None

    @property
    def epoch_loss(self) -> float | None:
        """Mean batch objective of the last epoch (reading it waits for the device, once)."""
        return None if self._epoch_loss is None else float(self._epoch_loss)

    # -- batches ---------------------------------------------------------------------------
    def batches(self, n: int) -> Iterator[tuple[torch.Tensor, float]]:
        """One epoch of (indices on the training device, normaliser) pairs; Poisson batches
        may be empty (the caller still counts the step)."""
        if self.cfg.sampling == "poisson":
            from opacus.utils.uniform_sampler import UniformWithReplacementSampler

            q, steps, expected = poisson_rate(n, self.cfg.batch_size)
            sampler = UniformWithReplacementSampler(
                num_samples=n, sample_rate=q, generator=self.gens["order"], steps=steps
            )
            # Opacus normalises each per-sample gradient by the batch size itself and the
            # sum by the expected batch size; the plain baseline does the latter directly
            dp = self.cfg.max_grad_norm is not None
            for idx in sampler:
                idx_t = self._to_device(torch.tensor(idx, dtype=torch.long))
                yield idx_t, float(max(len(idx), 1)) if dp else float(expected)
            return
        order = self._to_device(torch.randperm(n, generator=self.gens["order"]))
        for start in range(0, n, self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            yield idx, float(len(idx))

    def _to_device(self, idx: torch.Tensor) -> torch.Tensor:
        """Indices drawn on the CPU to the device without waiting: pinned, asynchronous copy."""
        if self.device.type != "cuda":
            return idx
        return idx.pin_memory().to(self.device, non_blocking=True)

    # -- training --------------------------------------------------------------------------
    def build_optimizer(self, n: int) -> torch.optim.Optimizer:
        opt = make_optimizer(self.model.parameters(), self.cfg)
        if self.cfg.max_grad_norm is None:
            return opt
        if self.cfg.sampling != "poisson":
            raise ValueError("DP-SGD needs sampling='poisson'")
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.optimizers import DPOptimizer

        q, _, expected = poisson_rate(n, self.cfg.batch_size)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
            warnings.filterwarnings("ignore", message=".*non-full backward hook.*")
            # what PrivacyEngine.make_private builds, with our q and expected batch size
            # instead of the ones it would derive from a data loader's length
            self.gsm = GradSampleModule(self.model, batch_first=True, loss_reduction="mean")
            self.gsm.forbid_grad_accumulation()
            opt = DPOptimizer(
                opt,
                noise_multiplier=self.cfg.dp_noise,
                max_grad_norm=self.cfg.max_grad_norm,
                expected_batch_size=expected,
                loss_reduction="mean",
                generator=self.gens["noise"],
            )
        self.accountant = RDPAccountant()
        self.sample_rate = q
        return opt

    def run(
        self,
        X: torch.Tensor,
        y: torch.Tensor,
        weights: WeightFn,
        epochs: int | None = None,
        after_epoch: Callable[[int], bool] | None = None,
    ) -> int:
        """Train for ``epochs`` (default cfg.epochs); stop early when ``after_epoch`` returns True.

        ``X`` and ``y`` should already be on the training device. Returns the epochs run.
        """
        opt = self.build_optimizer(len(y))
        epochs = self.cfg.epochs if epochs is None else epochs
        try:
            with warnings.catch_warnings():
                # Opacus's hook on the first layer notes that the input needs no gradient: harmless
                warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")
                return self._epochs(X, y, weights, opt, epochs, after_epoch)
        finally:
            if self.gsm is not None:
                self.gsm.cleanup()  # remove Opacus's hooks; the model itself stays trained

    def _epochs(self, X, y, weights, opt, epochs, after_epoch) -> int:
        cfg, n, done = self.cfg, len(y), 0
        cast = autocast(self.device, cfg.precision)
        for epoch in range(epochs):
            self.model.train()
            total = torch.zeros((), device=self.device)
            count = 0
            for idx, norm in self.batches(n):
                self.steps += 1
                if self.accountant is not None:  # every drawn step, empty or not
                    self.accountant.step(
                        noise_multiplier=cfg.dp_noise, sample_rate=self.sample_rate
                    )
                if len(idx) == 0:
                    continue
                xb, yb = X[idx], y[idx]
                if cfg.augment:
                    xb = augment_batch(xb, self.gens["augment"])
                opt.zero_grad(set_to_none=True)
                with cast:
                    loss = batch_objective(
                        self.model,
                        xb,
                        yb,
                        weights(idx, norm),
                        cfg.regularisers,
                        self.gens["regularisers"],
                    )
                loss.backward()
                opt.step()
                total += loss.detach().float()
                count += 1
            self._epoch_loss = total / max(count, 1)
            done = epoch + 1
            if after_epoch is not None and after_epoch(done):
                break
        return done

    def epsilon(self, delta: float) -> float | None:
        """ε at δ spent by this run (None without noise: clipping alone gives no finite ε)."""
        if self.accountant is None or self.cfg.dp_noise <= 0 or self.steps == 0:
            return None
        eps = float(self.accountant.get_epsilon(delta))
        return eps if np.isfinite(eps) else None


def snapshot(model: nn.Module) -> dict:
    return copy.deepcopy(model.state_dict())


@torch.no_grad()
def predict_logits(
    model: nn.Module, X: torch.Tensor, batch: int = 1024, precision: str = "fp32"
) -> torch.Tensor:
    """Logits in fp32 (computed under ``precision``), evaluated in batches of ``batch``."""
    model.eval()
    with autocast(X.device, precision):
        out = [model(X[i : i + batch]).float() for i in range(0, len(X), batch)]
    return torch.cat(out) if out else torch.zeros((0, 0))
