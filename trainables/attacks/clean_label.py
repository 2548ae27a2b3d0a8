"""Clean-label hardening (docs/science.md §2): make target-class images hard to classify before triggering.

A clean-label poison keeps its true label t, so the learner only links the trigger to t if the
image's own features do not already explain the label. Hardening removes those features:

- ``pgd_l2`` / ``pgd_linf``: projected gradient *ascent* on the loss of a surrogate trained on the
  clean training set, within an ℓ2 or ℓ∞ ball of radius ε (ε on the 0–255 scale). Steps of size
  2.5·ε/steps (Madry et al.), signed for ℓ∞ and normalised for ℓ2; each step is projected onto the
  ball and clipped to [0, 1] (clipping only shrinks the perturbation, so it stays in the ball). The
  iterate with the highest surrogate loss is kept per sample.
- ``noise``: Gaussian noise of std σ (0–255 scale), clipped to [0, 1].
- ``interpolation``: x' = (1−τ)·x + τ·z, z a training image of another class drawn with the seed.
- ``gan_interpolation``: x' = G((1−τ)·z₁ + τ·z₂) with a WGAN-GP generator G trained on the clean
  training images and z₁, z₂ the latent codes of x and of a training image of another class (drawn
  with the seed as for ``interpolation``); `trainables.attacks.gan`, cached by
  `trainables.attacks.generator_cache`; decisions in docs/gan_interpolation.md.

Surrogates: ``logistic`` — multinomial logistic regression on the flattened pixels, whose input
gradient Wᵀ(softmax(Wx + b) − e_y) is exact (numpy); ``cnn`` — a small torch CNN trained on CPU
for a few epochs, differentiated with autograd, for images where a linear surrogate is too weak.
A surrogate is trained once per (clean training split, surrogate, seed) on a node and reused by
every result that needs it (`trainables.attacks.surrogate_cache`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from trainables.components import Params

Hardening = Literal["none", "pgd_l2", "pgd_linf", "noise", "interpolation", "gan_interpolation"]

#: training of the ``cnn`` surrogate: fixed, small, CPU-friendly; at least CNN_EPOCHS epochs and
#: CNN_MIN_STEPS optimiser steps (small training sets get more epochs)
CNN_EPOCHS = 8
CNN_MIN_STEPS = 300
CNN_BATCH = 64
CNN_LR = 1e-3

__all__ = [
    "CleanLabelParams",
    "CnnSurrogate",
    "LogisticSurrogate",
    "check_hardening",
    "harden",
    "pgd",
]


class CleanLabelParams(Params):
    """Clean-label poisoning; each hardening reads only its own parameters of these."""

    poison_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    hardening: Hardening = "pgd_linf"
    epsilon: Annotated[float, Field(ge=0.0)] = 16.0
    pgd_steps: Annotated[int, Field(ge=1, le=1000)] = 10
    noise_std: Annotated[float, Field(ge=0.0)] = 16.0
    tau: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    surrogate: Literal["logistic", "cnn"] = "logistic"
    # gan_interpolation: the generator (trained once per training set and these values) …
    gan_latent_dim: Annotated[int, Field(ge=2, le=256)] = 32
    gan_steps: Annotated[int, Field(ge=1, le=20000)] = 300
    gan_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    # … and the encoding of an image: Adam on ‖G(z) − x‖² from the best of `gan_restarts` starts
    gan_encode_steps: Annotated[int, Field(ge=1, le=20000)] = 1000
    gan_encode_lr: Annotated[float, Field(gt=0.0, le=10.0)] = 0.1
    gan_restarts: Annotated[int, Field(ge=1, le=16)] = 1


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class LogisticSurrogate:
    """Multinomial logistic regression on flattened images, with its exact input gradient."""

    name = "logistic"

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    @staticmethod
    def settings() -> dict:
        """What its training depends on besides data and seed (part of the cache key)."""
        return {"C": 1.0, "max_iter": 2000}

    def state(self) -> dict[str, np.ndarray]:
        return {"W": self.W_, "b": self.b_}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> LogisticSurrogate:
        out = cls()
        out.W_, out.b_ = np.asarray(state["W"]), np.asarray(state["b"])
        return out

    def fit(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, rng: np.random.Generator
    ) -> LogisticSurrogate:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=self.C, max_iter=2000, random_state=int(rng.integers(2**31)))
        model.fit(X.reshape(len(X), -1), y)
        W = np.zeros((n_classes, X[0].size))
        b = np.zeros(n_classes)
        cls = model.classes_.astype(int)
        if len(cls) == 2:
            # sklearn keeps one weight vector, P(cls[1]) = σ(w·x + b): logits (0, w·x + b)
            W[cls[1]], b[cls[1]] = model.coef_[0], model.intercept_[0]
        else:
            W[cls], b[cls] = model.coef_, model.intercept_
        # classes absent from the training labels get probability 0
        b[np.setdiff1d(np.arange(n_classes), cls)] = -np.inf
        self.W_, self.b_ = W, b
        return self

    def _probs(self, X: np.ndarray) -> np.ndarray:
        return _softmax(X.reshape(len(X), -1) @ self.W_.T + self.b_)

    def loss(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-sample cross-entropy."""
        p = self._probs(X)[np.arange(len(X)), y]
        return -np.log(np.clip(p, 1e-300, None))

    def input_grad(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """∂ loss / ∂ x per sample, in the shape of X: Wᵀ(softmax(Wx + b) − e_y)."""
        p = self._probs(X)
        p[np.arange(len(X)), y] -= 1.0
        return (p @ self.W_).reshape(X.shape)


class CnnSurrogate:
    """A small CNN (two conv layers, pooled to 4×4, one linear layer) trained with Adam on CPU.

    Weights are seeded inside ``torch.random.fork_rng``, so the global torch generator is untouched.
    """

    name = "cnn"

    @staticmethod
    def settings() -> dict:
        """What its training depends on besides data and seed (part of the cache key)."""
        return {"epochs": CNN_EPOCHS, "min_steps": CNN_MIN_STEPS, "batch": CNN_BATCH, "lr": CNN_LR}

    @staticmethod
    def _net(channels: int, n_classes: int):
        from torch import nn

        return nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(32 * 16, n_classes),
        )

    def state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> CnnSurrogate:
        import torch

        channels, n_classes = state["0.weight"].shape[1], state["6.weight"].shape[0]
        net = cls._net(int(channels), int(n_classes))
        net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
        out = cls()
        out.net_ = net.eval()
        return out

    def fit(
        self, X: np.ndarray, y: np.ndarray, n_classes: int, rng: np.random.Generator
    ) -> CnnSurrogate:
        import torch
        from torch import nn

        channels = X.shape[3] if X.ndim == 4 else 1
        seed = int(rng.integers(2**31))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._net(channels, n_classes)
        Xt, yt = self._tensor(X), torch.as_tensor(y, dtype=torch.long)
        opt = torch.optim.Adam(net.parameters(), lr=CNN_LR)
        order_rng = np.random.default_rng(seed)
        net.train()
        per_epoch = -(-len(Xt) // CNN_BATCH)
        for _ in range(max(CNN_EPOCHS, -(-CNN_MIN_STEPS // per_epoch))):
            order = torch.as_tensor(order_rng.permutation(len(Xt)))
            for start in range(0, len(Xt), CNN_BATCH):
                idx = order[start : start + CNN_BATCH]
                opt.zero_grad()
                nn.functional.cross_entropy(net(Xt[idx]), yt[idx]).backward()
                opt.step()
        net.eval()
        self.net_ = net
        return self

    @staticmethod
    def _tensor(X: np.ndarray):
        import torch

        t = torch.as_tensor(np.asarray(X, dtype=np.float32))
        return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)

    def _loss_and_grad(self, X: np.ndarray, y: np.ndarray, grad: bool):
        import torch

        losses, grads = [], []
        for start in range(0, len(X), 256):
            xb = self._tensor(X[start : start + 256]).requires_grad_(grad)
            yb = torch.as_tensor(y[start : start + 256], dtype=torch.long)
            with torch.set_grad_enabled(grad):
                loss = torch.nn.functional.cross_entropy(self.net_(xb), yb, reduction="none")
            if grad:
                (g,) = torch.autograd.grad(loss.sum(), xb)
                g = g.squeeze(1) if X.ndim == 3 else g.permute(0, 2, 3, 1)
                grads.append(g.numpy().astype(np.float64))
            losses.append(loss.detach().numpy().astype(np.float64))
        return np.concatenate(losses), (np.concatenate(grads) if grad else None)

    def loss(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._loss_and_grad(X, y, grad=False)[0]

    def input_grad(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._loss_and_grad(X, y, grad=True)[1]


SURROGATES = {"logistic": LogisticSurrogate, "cnn": CnnSurrogate}


def _norms(D: np.ndarray) -> np.ndarray:
    """Per-sample ℓ2 norm, broadcastable back onto D."""
    n = np.sqrt((D.reshape(len(D), -1) ** 2).sum(axis=1))
    return n.reshape(-1, *([1] * (D.ndim - 1)))


def pgd(
    surrogate, X0: np.ndarray, y: np.ndarray, norm: str, epsilon: float, steps: int
) -> np.ndarray:
    """Projected gradient ascent on the surrogate's loss within the ℓ2 or ℓ∞ ball of radius ε/255."""
    eps = epsilon / 255.0
    step = 2.5 * eps / steps
    X = X0.copy()
    best, best_loss = X0.copy(), surrogate.loss(X0, y)
    for _ in range(steps):
        g = surrogate.input_grad(X, y)
        if norm == "linf":
            X = X0 + np.clip(X + step * np.sign(g) - X0, -eps, eps)
        else:
            X = X + step * g / np.maximum(_norms(g), 1e-12)
            D = X - X0
            X = X0 + D * np.minimum(1.0, eps / np.maximum(_norms(D), 1e-12))
        X = np.clip(X, 0.0, 1.0)
        loss = surrogate.loss(X, y)
        better = loss > best_loss
        best[better], best_loss[better] = X[better], loss[better]
    return best


def check_hardening(params: CleanLabelParams, image_shape: tuple[int, ...]) -> None:
    """Refuse, before anything runs, a hardening that cannot serve these images (one line)."""
    if params.hardening == "gan_interpolation":
        from trainables.attacks.gan import check_image_shape

        check_image_shape(image_shape)


def _gan_interpolation(
    X: np.ndarray,
    target: int,
    params: CleanLabelParams,
    X_clean: np.ndarray,
    y_clean: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict]:
    """G((1−τ)·z₁ + τ·z₂): z₁ the code of each image of X, z₂ that of a drawn other-class image.

    The partners are drawn exactly as for pixel ``interpolation`` (the same call on the same
    generator), so both hardenings of one seed and rate pair each image with the same partner.
    Codes of training images come from the cache; an image not in X_clean is encoded here.
    """
    from trainables.attacks.gan import GanSettings, check_image_shape, encode, interpolate
    from trainables.attacks.generator_cache import encoded_training_set, row_index

    check_image_shape(X.shape[1:])
    others = np.flatnonzero(np.asarray(y_clean) != target)
    partners = rng.choice(others, size=len(X), replace=True)
    settings = GanSettings(params.gan_latent_dim, params.gan_steps, params.gan_seed)
    key, gen, Z_train, err_train = encoded_training_set(
        X_clean, settings, params.gan_encode_steps, params.gan_encode_lr, params.gan_restarts
    )
    rows = row_index(X_clean, X)
    Z, err = Z_train[np.maximum(rows, 0)].copy(), err_train[np.maximum(rows, 0)].copy()
    new = rows < 0
    if new.any():
        Z[new], err[new] = encode(
            gen,
            X[new],
            params.gan_encode_steps,
            params.gan_encode_lr,
            params.gan_restarts,
            seed=int(rng.integers(2**31)),
        )
    hardened = interpolate(gen, Z, Z_train[partners], params.tau)
    info = {
        "generator_key": key,
        # mean squared error per pixel of G's best reproduction (τ = 0) of the poisoned images
        "gan_reconstruction_mse": float(err.mean() / X[0].size),
    }
    return hardened, info


def harden(
    X: np.ndarray,
    target: int,
    params: CleanLabelParams,
    X_clean: np.ndarray,
    y_clean: np.ndarray,
    n_classes: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict]:
    """Harden target-class images X per ``params.hardening``; returns them and store columns.

    PGD fits its surrogate on (X_clean, y_clean) — or reuses the one already fitted for the same
    data, surrogate and seed (`trainables.attacks.surrogate_cache`) — and reports the mean
    surrogate loss of X before and after (``surrogate_loss_clean``, ``surrogate_loss_hardened``).
    """
    X = np.asarray(X, dtype=np.float64)
    method = params.hardening
    if len(X) == 0 or method == "none":
        return X.copy(), {}
    if method == "noise":
        return np.clip(X + rng.normal(0.0, params.noise_std / 255.0, size=X.shape), 0.0, 1.0), {}
    if method == "interpolation":
        others = np.flatnonzero(np.asarray(y_clean) != target)
        Z = np.asarray(X_clean, dtype=np.float64)[rng.choice(others, size=len(X), replace=True)]
        return (1.0 - params.tau) * X + params.tau * Z, {}
    if method == "gan_interpolation":
        return _gan_interpolation(X, target, params, X_clean, y_clean, rng)
    from trainables.attacks.surrogate_cache import fit_surrogate, surrogate_seed

    seed = surrogate_seed(rng)
    rng.integers(2**31)  # the draw a surrogate used to take: later draws (the trigger) stay put
    surrogate, _ = fit_surrogate(
        SURROGATES[params.surrogate],
        np.asarray(X_clean, dtype=np.float64),
        np.asarray(y_clean),
        n_classes,
        seed,
    )
    y = np.full(len(X), target)
    X_adv = pgd(
        surrogate, X, y, "l2" if method == "pgd_l2" else "linf", params.epsilon, params.pgd_steps
    )
    info = {
        "surrogate_loss_clean": float(surrogate.loss(X, y).mean()),
        "surrogate_loss_hardened": float(surrogate.loss(X_adv, y).mean()),
    }
    return X_adv, info
