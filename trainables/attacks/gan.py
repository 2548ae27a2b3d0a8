"""A small WGAN-GP for grey square images, and latent encoding, interpolation and decoding with it.

Used by the clean-label ``gan_interpolation`` hardening (docs/science.md §2; the decisions are in
docs/gan_interpolation.md). The networks are DCGAN-like and deliberately small so that a
generator trains on two CPU cores in tens of seconds:

- generator: z ∈ R^d → linear → (2w, s/4, s/4) → ReLU → transposed conv (w, s/2, s/2) → ReLU →
  transposed conv (1, s, s) → sigmoid, so every output is an image in [0, 1];
- critic: conv (w, s/2) → LeakyReLU → conv (2w, s/4) → LeakyReLU → linear → one score; no
  normalisation layers, as the gradient penalty is per sample (Gulrajani et al., 2017).

Images must be grey and square with a side that is a multiple of 4 in [8, 32] (digits' 8×8 and
MNIST's 28×28 included); `check_image_shape` says so in one line for anything else.

Training is WGAN-GP: n_critic = 5 and λ = 10 as Gulrajani et al., Adam with β = (0.5, 0.9) and a
learning rate of 1e-3 (ten times theirs: the budget is a few hundred generator steps), seeded inside
``torch.random.fork_rng`` so the global torch generator is untouched, on one torch thread
(`single_thread`). Encoding finds z minimising ‖G(z) − x‖² per image by Adam from seeded N(0, I)
starts; with several restarts the code with the lowest error is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from backdoor_sweep.errors import SweepError

#: channels of the first critic layer / last generator layer (the other layer has twice as many)
WIDTH = 16
#: WGAN-GP (Gulrajani et al., 2017): critic updates per generator update, gradient-penalty weight
CRITIC_STEPS = 5
GP_WEIGHT = 10.0
LEARNING_RATE = 1e-3
ADAM_BETAS = (0.5, 0.9)
BATCH = 64
#: images encoded per batch (memory stays small; each image's code is optimised independently)
ENCODE_BATCH = 512
#: allowed image sides: grey, square, a multiple of 4 in [MIN_SIDE, MAX_SIDE]
MIN_SIDE, MAX_SIDE = 8, 32

__all__ = [
    "GanSettings",
    "TrainedGenerator",
    "check_image_shape",
    "decode",
    "encode",
    "interpolate",
    "train_generator",
]


def check_image_shape(shape: tuple[int, ...]) -> None:
    """Refuse images the generator cannot model (colour, non-square, or an unsupported side)."""
    ok = (
        len(shape) == 2
        and shape[0] == shape[1]
        and shape[0] % 4 == 0
        and MIN_SIDE <= shape[0] <= MAX_SIDE
    )
    if not ok:
        raise SweepError(
            "hardening gan_interpolation needs grey square images with a side that is a multiple "
            f"of 4 in [{MIN_SIDE}, {MAX_SIDE}] (e.g. 8×8 digits, 28×28 MNIST); got image shape "
            f"{tuple(shape)}"
        )


@dataclass(frozen=True)
class GanSettings:
    """What determines a trained generator besides its training images."""

    latent_dim: int
    steps: int
    seed: int

    def as_dict(self) -> dict:
        return {
            "latent_dim": self.latent_dim,
            "steps": self.steps,
            "seed": self.seed,
            "width": WIDTH,
            "critic_steps": CRITIC_STEPS,
            "gp_weight": GP_WEIGHT,
            "learning_rate": LEARNING_RATE,
            "adam_betas": list(ADAM_BETAS),
            "batch": BATCH,
        }


def build_generator(latent_dim: int, side: int):
    import torch
    from torch import nn

    base = side // 4

    class Generator(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(latent_dim, 2 * WIDTH * base * base)
            self.up = nn.Sequential(
                nn.ReLU(),
                nn.ConvTranspose2d(2 * WIDTH, WIDTH, 4, stride=2, padding=1),
                nn.ReLU(),
                nn.ConvTranspose2d(WIDTH, 1, 4, stride=2, padding=1),
                nn.Sigmoid(),
            )

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.up(self.fc(z).view(-1, 2 * WIDTH, base, base)).squeeze(1)

    return Generator()


def build_critic(side: int):
    from torch import nn

    base = side // 4
    return nn.Sequential(
        nn.Unflatten(1, (1, side)),
        nn.Conv2d(1, WIDTH, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(WIDTH, 2 * WIDTH, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(2 * WIDTH * base * base, 1),
    )


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block (the previous setting is restored).

    These networks are too small to gain from more threads, and on a busy machine OpenMP threads
    that wait for each other cost far more: 30 generator steps on digits took 7.8 s on one thread
    and 124 s on two, measured with the machine's 2 cores oversubscribed (load ≈ 18).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class TrainedGenerator:
    """A generator's weights with what is needed to rebuild it, and its training record."""

    settings: GanSettings
    side: int
    state: dict
    losses: dict

    def module(self):
        """The generator as a torch module in eval mode, its weights frozen."""
        net = build_generator(self.settings.latent_dim, self.side)
        net.load_state_dict(self.state)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        return net


def _gradient_penalty(critic, real, fake, rng_t):
    import torch

    a = torch.rand(len(real), 1, 1, generator=rng_t)
    mix = (a * real + (1 - a) * fake).requires_grad_(True)
    (g,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    return ((g.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def train_generator(X: np.ndarray, settings: GanSettings) -> TrainedGenerator:
    """Train a WGAN-GP on images X (n, s, s) in [0, 1]; returns the generator and its losses.

    Losses are recorded per generator step: the critic loss (−Ŵ + λ·GP, mean over the critic
    updates of that step), the Wasserstein estimate Ŵ = E[D(x)] − E[D(G(z))], the gradient
    penalty and the generator loss −E[D(G(z))].
    """
    import torch

    check_image_shape(X.shape[1:])
    side = X.shape[1]
    real_all = torch.as_tensor(np.asarray(X, dtype=np.float32))
    with single_thread(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        gen, critic = build_generator(settings.latent_dim, side), build_critic(side)
        rng_t = torch.Generator().manual_seed(settings.seed + 1)
        pick = np.random.default_rng(settings.seed)
        opt_g = torch.optim.Adam(gen.parameters(), lr=LEARNING_RATE, betas=ADAM_BETAS)
        opt_c = torch.optim.Adam(critic.parameters(), lr=LEARNING_RATE, betas=ADAM_BETAS)
        losses: dict[str, list[float]] = {
            "critic_loss": [],
            "wasserstein": [],
            "gradient_penalty": [],
            "generator_loss": [],
        }
        batch = min(BATCH, len(real_all))
        for _ in range(settings.steps):
            c_loss = w_est = gp_sum = 0.0
            for _ in range(CRITIC_STEPS):
                real = real_all[torch.as_tensor(pick.choice(len(real_all), batch, replace=False))]
                with torch.no_grad():
                    fake = gen(torch.randn(batch, settings.latent_dim, generator=rng_t))
                w = critic(real).mean() - critic(fake).mean()
                gp = _gradient_penalty(critic, real, fake, rng_t)
                loss = -w + GP_WEIGHT * gp
                opt_c.zero_grad()
                loss.backward()
                opt_c.step()
                c_loss, w_est, gp_sum = c_loss + loss.item(), w_est + w.item(), gp_sum + gp.item()
            g_loss = -critic(gen(torch.randn(batch, settings.latent_dim, generator=rng_t))).mean()
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            losses["critic_loss"].append(c_loss / CRITIC_STEPS)
            losses["wasserstein"].append(w_est / CRITIC_STEPS)
            losses["gradient_penalty"].append(gp_sum / CRITIC_STEPS)
            losses["generator_loss"].append(g_loss.item())
    state = {k: v.detach().clone() for k, v in gen.state_dict().items()}
    return TrainedGenerator(settings, side, state, losses)


def encode(
    generator: TrainedGenerator,
    X: np.ndarray,
    steps: int,
    lr: float,
    restarts: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Latent codes z with G(z) ≈ x for each image of X, and their squared errors ‖G(z) − x‖².

    Each image's code is optimised on its own loss (Adam's state is per coordinate, so batching
    does not couple images); every restart starts from N(0, I) drawn from ``seed``, and the code
    with the lowest final error is kept.
    """
    import torch

    net = generator.module()
    d = generator.settings.latent_dim
    n = len(X)
    init = np.random.default_rng(seed).standard_normal((restarts, n, d)).astype(np.float32)
    best_z = np.zeros((n, d), dtype=np.float32)
    best_err = np.full(n, np.inf)
    target_all = torch.as_tensor(np.asarray(X, dtype=np.float32))
    with single_thread():
        for r in range(restarts):
            _encode_restart(net, init[r], target_all, steps, lr, best_z, best_err)
    return best_z, best_err


def _encode_restart(net, init, target_all, steps, lr, best_z, best_err) -> None:
    """One restart over every image, batch by batch; improves ``best_z``/``best_err`` in place."""
    import torch

    n = len(target_all)
    for start in range(0, n, ENCODE_BATCH):
        stop = min(n, start + ENCODE_BATCH)
        target = target_all[start:stop]
        z = torch.as_tensor(init[start:stop]).clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for _ in range(steps):
            err = ((net(z) - target) ** 2).flatten(1).sum(dim=1)
            opt.zero_grad()
            err.sum().backward()
            opt.step()
        with torch.no_grad():
            err = ((net(z) - target) ** 2).flatten(1).sum(dim=1).numpy().astype(np.float64)
        better = err < best_err[start:stop]
        rows = np.arange(start, stop)[better]
        best_z[rows], best_err[rows] = z.detach().numpy()[better], err[better]


def decode(generator: TrainedGenerator, Z: np.ndarray) -> np.ndarray:
    """G(z) per code, as float64 images in [0, 1]."""
    import torch

    net = generator.module()
    with single_thread(), torch.no_grad():
        out = [
            net(torch.as_tensor(np.asarray(Z[i : i + ENCODE_BATCH], dtype=np.float32)))
            for i in range(0, len(Z), ENCODE_BATCH)
        ]
    if not out:
        return np.zeros((0, generator.side, generator.side))
    return torch.cat(out).numpy().astype(np.float64)


def interpolate(
    generator: TrainedGenerator, z_from: np.ndarray, z_to: np.ndarray, tau: float
) -> np.ndarray:
    """G((1 − τ)·z₁ + τ·z₂): τ = 0 is G's reproduction of the first image, τ = 1 of the second."""
    return decode(generator, (1.0 - tau) * np.asarray(z_from) + tau * np.asarray(z_to))
