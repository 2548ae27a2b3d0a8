"""Mini-batch training of a torch model: batches, augmentation, weights, and DP-SGD through Opacus.

Two ways to draw batches:

- ``shuffle`` (default): a seeded permutation cut into batches of ``batch_size``; each batch's loss
  is normalised by its own size (a plain mean).
- ``poisson`` (used by the ``dp_sgd`` defence): Opacus's ``UniformWithReplacementSampler`` — each
  sample joins a step independently with rate q = 1/⌈n/batch_size⌉, ⌈n/batch_size⌉ steps an epoch —
  and the summed loss is divided by the *expected* batch size ⌊q·n⌋, as Opacus's ``DPOptimizer``
  does. With ``max_grad_norm`` set, Opacus's ``PrivacyEngine`` wraps model and optimiser: per-sample
  gradients clipped to that norm, Gaussian noise of std σ·c added to their sum, then divided by the
  expected batch size; the RDP accountant tracks ε. Without ``max_grad_norm`` the same batches and
  normalisation are used with ordinary gradients: the plain-SGD baseline with the same effective
  learning rate (its update equals DP-SGD's with σ = 0 and no clipping — tested).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainables.learners.regularisers import Regularisers, batch_objective

#: per-batch anchor weights: (batch indices, normaliser) -> weights
WeightFn = Callable[[torch.Tensor, float], torch.Tensor]


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
    """Random crop after zero-padding by max(1, H // 8) pixels, and a random horizontal flip."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)[None, :]
    cols = ox[:, None] + torch.arange(w, device=x.device)[None, :]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[b, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


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


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def generators(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """Independent seeded generators for batch order, augmentation, regularisers and DP noise."""
    names = ("order", "augment", "regularisers", "noise")
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(names), dtype=np.uint64)
    out = {}
    for name, s in zip(names, seeds, strict=True):
        dev = device if name == "noise" else torch.device("cpu")
        out[name] = torch.Generator(device=dev).manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF)
    return out


def poisson_rate(n: int, batch_size: int) -> tuple[float, int]:
    """Opacus's sampling rate q = 1/⌈n/b⌉ and its expected batch size ⌊n·q⌋."""
    steps = -(-n // batch_size)
    q = 1.0 / steps
    return q, max(1, int(n * q))


class Trainer:
    """Trains one model in place; keeps the Opacus engine (for ε) when DP-SGD is on."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, device: torch.device) -> None:
        self.model, self.cfg, self.device = model, cfg, device
        self.gens = generators(cfg.seed, device)
        self.engine = None
        self.steps = 0

    # -- batches ---------------------------------------------------------------------------
    def batches(self, n: int) -> Iterator[tuple[torch.Tensor, float]]:
        """One epoch of (indices, normaliser) pairs."""
        if self.cfg.sampling == "poisson":
            from opacus.utils.uniform_sampler import UniformWithReplacementSampler

            q, expected = poisson_rate(n, self.cfg.batch_size)
            sampler = UniformWithReplacementSampler(
                num_samples=n, sample_rate=q, generator=self.gens["order"]
            )
            # Opacus normalises each per-sample gradient by the batch size itself and the
            # sum by the expected batch size; the plain baseline does the latter directly
            dp = self.cfg.max_grad_norm is not None
            for idx in sampler:
                if idx:
                    idx_t = torch.tensor(idx, dtype=torch.long)
                    yield idx_t, float(len(idx)) if dp else float(expected)
            return
        order = torch.randperm(n, generator=self.gens["order"])
        for start in range(0, n, self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            yield idx, float(len(idx))

    # -- training --------------------------------------------------------------------------
    def build_optimizer(self, n: int) -> torch.optim.Optimizer:
        opt = make_optimizer(self.model.parameters(), self.cfg)
        if self.cfg.max_grad_norm is None:
            return opt
        if self.cfg.sampling != "poisson":
            raise ValueError("DP-SGD needs sampling='poisson'")
        from opacus import PrivacyEngine
        from torch.utils.data import DataLoader, TensorDataset

        # the loader only tells Opacus n and the batch size (→ q for the accountant); batches
        # come from `batches`, the same Poisson sampler with a seeded generator
        loader = DataLoader(TensorDataset(torch.arange(n)), batch_size=self.cfg.batch_size)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
            warnings.filterwarnings("ignore", message=".*non-full backward hook.*")
            self.engine = PrivacyEngine(accountant="rdp")
            self.gsm, opt, _ = self.engine.make_private(
                module=self.model,
                optimizer=opt,
                data_loader=loader,
                noise_multiplier=self.cfg.dp_noise,
                max_grad_norm=self.cfg.max_grad_norm,
                noise_generator=self.gens["noise"],
                poisson_sampling=True,
            )
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

        Returns the number of epochs run.
        """
        opt = self.build_optimizer(len(y))
        epochs = self.cfg.epochs if epochs is None else epochs
        try:
            with warnings.catch_warnings():
                # Opacus's hook on the first layer notes that the input needs no gradient: harmless
                warnings.filterwarnings("ignore", message=".*Full backward hook is firing.*")
                return self._epochs(X, y, weights, opt, epochs, after_epoch)
        finally:
            if self.engine is not None:
                self.gsm.cleanup()  # remove Opacus's hooks; the model itself stays trained

    def _epochs(self, X, y, weights, opt, epochs, after_epoch) -> int:
        cfg, n, done = self.cfg, len(y), 0
        for epoch in range(epochs):
            self.model.train()
            for idx, norm in self.batches(n):
                xb, yb = X[idx.to(X.device)], y[idx.to(y.device)]
                if cfg.augment:
                    xb = augment_batch(xb, self.gens["augment"])
                opt.zero_grad()
                loss = batch_objective(
                    self.model,
                    xb,
                    yb,
                    weights(idx, norm).to(xb.device),
                    cfg.regularisers,
                    self.gens["regularisers"],
                )
                loss.backward()
                opt.step()
                self.steps += 1
            done = epoch + 1
            if after_epoch is not None and after_epoch(done):
                break
        return done

    def epsilon(self, delta: float) -> float | None:
        """ε at δ spent by this run (None without noise: clipping alone gives no finite ε)."""
        if self.engine is None or self.cfg.dp_noise <= 0 or self.steps == 0:
            return None
        eps = float(self.engine.get_epsilon(delta))
        return eps if np.isfinite(eps) else None


def snapshot(model: nn.Module) -> dict:
    return copy.deepcopy(model.state_dict())


@torch.no_grad()
def predict_logits(model: nn.Module, X: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    model.eval()
    out = [model(X[i : i + batch]) for i in range(0, len(X), batch)]
    return torch.cat(out) if out else torch.zeros((0, 0))
