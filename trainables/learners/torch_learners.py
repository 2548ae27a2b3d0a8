"""Network learners as scikit-learn estimators: ``cnn``, ``mlp``, ``resnet18``, ``torch_logistic``.

Each stores keyword hyperparameters in ``__init__`` — exactly the fields of its ``Params`` model,
declared once in `trainables.learners.params` (`trainables.components.Hyperparameters`), so ``resnet18`` takes no
``cnn_width`` — and builds, seeds and trains its torch module in ``fit`` (docs/science.md §5, §8;
modules in `trainables.learners.networks`, the loop in `trainables.learners.training`, the
objective and its latent regularisers in `trainables.learners.regularisers`). Beyond ``fit``/``predict``/``predict_proba``/``decision_function``:

- ``fit_beta(X, y, is_poison, beta)``: per-batch loss = mean loss on the batch's clean samples
  + β · mean loss on its poisoned samples (the backdoor learning curve). Poisons keep their batch
  slots at β = 0, so fits at different β see the same batches and differ only by β.
- ``fit_until_plateau`` (early stopping on a validation set) and ``fine_tune`` (continue training
  on other data) for the clean fine-tuning defence.

CPU by default, with torch threads = the CPUs Ray assigned to the trial; the GPU when Ray assigned
the trial one (a fraction of one included) and CUDA is available. ``deterministic`` (default True)
and ``precision`` (``fp32`` or ``bf16``) come from the spec's ``execution`` section, not the grid
(``EXECUTION_KEYS``): with ``deterministic`` the same seed on the same device gives identical
results, CPU or GPU (`trainables.learners.training.determinism`). torch is imported on first use,
so validating a spec or running scikit-learn sweeps does not pay for it. An observer set as the
attribute ``on_epoch`` (not a hyperparameter: ``clone`` drops it) is called as
``on_epoch(learner, epoch)`` after every training epoch, with ``train_loss_`` already set to that
epoch's mean batch objective (`trainables.measures.dynamics`, `trainables.epochs`).
DP-SGD is not a learner hyperparameter in specs: the ``dp_sgd`` defence sets ``sampling``,
``dp_noise``, ``max_grad_norm`` and ``dp_delta`` (constructor arguments) and reads ``dp_epsilon_``.
"""

from __future__ import annotations

import sys
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from trainables.components import Hyperparameters, Params
from trainables.learners.params import CNNParams, MLPParams, TorchParams


def ray_resources() -> tuple[int | None, bool]:
    """(CPUs, has a GPU) Ray assigned to this worker; (None, False) outside a Ray worker."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None, False
    try:
        ctx = ray.get_runtime_context()
        if ctx.worker.mode != ray.WORKER_MODE:
            return None, False
        cpus = ctx.get_assigned_resources().get("CPU")
        return (max(1, int(cpus)) if cpus else None), bool(ray.get_gpu_ids())
    except Exception:
        return None, False


def beta_weights(poison, beta: float, norm: float):
    """Anchor weights of one batch: 1/B_clean on clean rows, β/B_poison on poisoned rows, times
    B/norm (1 for shuffled batches; B/E[B] for Poisson batches normalised by the expected size).

    Computed on ``poison``'s device without reading anything back (no wait for a GPU)."""
    import torch

    n_p = poison.sum().clamp_min(1).to(torch.float32)
    n_c = (~poison).sum().clamp_min(1).to(torch.float32)
    w = torch.where(poison, beta / n_p, 1.0 / n_c)
    return w * (len(poison) / norm)


class TorchLearner(Hyperparameters, ClassifierMixin, BaseEstimator):
    """Shared estimator: subclasses set ``name``, ``Params`` (when they add to `TorchParams`) and
    ``_build``. ``__init__`` takes exactly the ``Params`` fields and ``init_extras``."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "torch"
    loss: ClassVar[str] = "cross_entropy"
    Params: ClassVar[type[Params]] = TorchParams
    #: constructor arguments set from the spec's ``execution`` section (flat keys of a result)
    EXECUTION_KEYS: ClassVar[tuple[str, ...]] = ("deterministic", "precision")
    #: convolutional: stored channels-last on CUDA
    conv: ClassVar[bool] = False
    #: constructor arguments that are not spec parameters: the ``dp_sgd`` defence sets the first
    #: four (module docstring), the spec's execution section the next two, the trial the seed
    init_extras: ClassVar[dict] = {
        "sampling": "shuffle",
        "dp_noise": 0.0,
        "max_grad_norm": None,
        "dp_delta": 1e-5,
        "deterministic": True,
        "precision": "fp32",
        "random_state": None,
    }

    # -- construction ----------------------------------------------------------------------
    def _build(self, in_channels: int, n_inputs: int, n_classes: int):
        raise NotImplementedError  # pragma: no cover - abstract

    def regularisers(self):
        from trainables.learners.regularisers import Regularisers

        return Regularisers(
            logit_squeeze=self.logit_squeeze_weight,
            manifold_mixup=self.manifold_mixup_weight,
            contrastive=self.contrastive_weight,
            contrastive_margin=self.contrastive_margin,
            snnl=self.snnl_weight,
            snnl_temperature=self.snnl_temperature,
        )

    def _config(self, **override):
        from trainables.learners.training import TrainConfig

        values = dict(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            augment=self.augment,
            regularisers=self.regularisers(),
            sampling=self.sampling,
            dp_noise=self.dp_noise,
            max_grad_norm=self.max_grad_norm,
            seed=self.seed_,
            precision=self.precision,
        )
        values.update(override)
        return TrainConfig(**values)

    def _setup(self, X, y):
        """Resolve seed, threads and device; build a freshly seeded model; return tensors."""
        import torch

        from trainables.learners.networks import dp_compatible

        if self.random_state is None:
            self.seed_ = int(np.random.default_rng().integers(2**31))
        else:
            self.seed_ = int(self.random_state)
        cpus, gpu = ray_resources()
        if cpus:
            torch.set_num_threads(cpus)
        self.device_ = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
        if self.precision == "bf16" and self.max_grad_norm is not None:
            raise ValueError(
                "precision bf16 cannot train with per-sample clipping (dp_sgd): Opacus computes "
                "per-sample gradients in fp32; use precision fp32"
            )
        self.classes_ = np.unique(np.asarray(y))
        self.input_shape_ = tuple(np.shape(X)[1:])
        Xt = self._to_device(X)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed_)
            model = self._build(Xt.shape[1], int(np.prod(Xt.shape[1:])), len(self.classes_))
        if self.sampling == "poisson":  # dp_sgd, baseline included: the same architecture
            model = dp_compatible(model)
        model = model.to(self.device_)
        if self._channels_last():
            model = model.to(memory_format=torch.channels_last)
        self.model_ = model
        return Xt, self._label_tensor(y)

    def _channels_last(self) -> bool:
        return self.conv and self.device_.type == "cuda"

    def _to_device(self, X):
        """Images as one (n, C, H, W) tensor on the device, channels-last for conv nets on CUDA."""
        import torch

        from trainables.learners.training import images_to_tensor

        Xt = images_to_tensor(X, self.device_)
        return Xt.contiguous(memory_format=torch.channels_last) if self._channels_last() else Xt

    def _label_tensor(self, y):
        import torch

        y = np.asarray(y)
        idx = np.searchsorted(self.classes_, y)
        if np.any(idx >= len(self.classes_)) or np.any(
            self.classes_[np.minimum(idx, len(self.classes_) - 1)] != y
        ):
            raise ValueError(f"labels must be among the fitted classes {self.classes_.tolist()}")
        return torch.as_tensor(idx, dtype=torch.long, device=self.device_)

    def _train(self, Xt, yt, weights, **kwargs):
        from trainables.learners.training import Trainer, determinism

        trainer = Trainer(self.model_, self._config(), self.device_)
        hook = getattr(self, "on_epoch", None)  # an observer, e.g. trainables.measures.dynamics
        if hook is not None:
            inner = kwargs.get("after_epoch")

            def after_epoch(epoch: int) -> bool:
                self.train_loss_ = trainer.epoch_loss  # one wait for the device per epoch
                hook(self, epoch)
                return bool(inner(epoch)) if inner is not None else False

            kwargs["after_epoch"] = after_epoch
        with determinism(self.deterministic):
            self.epochs_trained_ = trainer.run(Xt, yt, weights, **kwargs)
        self.train_loss_ = trainer.epoch_loss
        self.train_steps_ = trainer.steps
        self.dp_epsilon_ = trainer.epsilon(self.dp_delta)
        self.per_sample_clipping_ = trainer.accountant is not None  # Opacus was engaged
        return trainer

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        import torch

        Xt, yt = self._setup(X, y)
        s = (
            torch.ones(len(yt), device=self.device_)
            if sample_weight is None
            else torch.as_tensor(np.asarray(sample_weight, dtype=np.float32), device=self.device_)
        )
        self._train(Xt, yt, lambda idx, norm: s[idx] / norm)
        return self

    def fit_beta(self, X, y, is_poison, beta: float):
        """Mean loss on each batch's clean samples + β · mean loss on its poisoned samples."""
        import torch

        Xt, yt = self._setup(X, y)
        poison = torch.as_tensor(np.asarray(is_poison, dtype=bool), device=self.device_)
        self._train(Xt, yt, lambda idx, norm: beta_weights(poison[idx], float(beta), norm))
        return self

    def fit_until_plateau(self, X, y, X_val, y_val, patience: int = 5, max_epochs: int = 100):
        """Train until validation accuracy has not improved for ``patience`` epochs; keep the best."""
        import torch

        from trainables.learners.training import predict_logits, snapshot

        Xt, yt = self._setup(X, y)
        Xv, yv = self._to_device(X_val), self._label_tensor(y_val)
        self.best_val_acc_, self.best_epoch_, best = -1.0, 0, snapshot(self.model_)

        def after_epoch(epoch: int) -> bool:
            logits = predict_logits(self.model_, Xv, precision=self.precision)
            acc = float((logits.argmax(1) == yv).float().mean()) if len(yv) else 0.0
            if acc > self.best_val_acc_:
                self.best_val_acc_, self.best_epoch_ = acc, epoch
                best.clear()
                best.update(snapshot(self.model_))
            return epoch - self.best_epoch_ >= patience

        ones = torch.ones(len(yt), device=self.device_)
        self._train(
            Xt, yt, lambda idx, norm: ones[idx] / norm, epochs=max_epochs, after_epoch=after_epoch
        )
        self.model_.load_state_dict(best)
        return self

    def fine_tune(self, X, y, epochs: int, lr: float | None = None):
        """Continue training the fitted model on (X, y): plain mini-batch SGD, a fresh optimiser."""
        import torch

        from trainables.learners.training import Trainer, determinism

        Xt, yt = self._to_device(X), self._label_tensor(y)
        cfg = self._config(
            epochs=int(epochs),
            lr=self.lr if lr is None else float(lr),
            sampling="shuffle",
            dp_noise=0.0,
            max_grad_norm=None,
            seed=self.seed_ + 1,
        )
        ones = torch.ones(len(yt), device=self.device_)
        with determinism(self.deterministic):
            Trainer(self.model_, cfg, self.device_).run(Xt, yt, lambda idx, norm: ones[idx] / norm)
        return self

    # -- prediction ------------------------------------------------------------------------
    def _logits(self, X) -> np.ndarray:
        from trainables.learners.training import determinism, predict_logits

        with determinism(self.deterministic):
            logits = predict_logits(self.model_, self._to_device(X), precision=self.precision)
        return logits.double().cpu().numpy()

    def predict_proba(self, X) -> np.ndarray:
        z = self._logits(X)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def decision_function(self, X) -> np.ndarray:
        """Binary: logit of class 1 minus logit of class 0, shape (n,); else the logits (n, K)."""
        z = self._logits(X)
        return z[:, 1] - z[:, 0] if z.shape[1] == 2 else z

    def predict(self, X) -> np.ndarray:
        return self.classes_[self._logits(X).argmax(axis=1)]

    def weight_vector(self) -> np.ndarray | None:
        """w for a binary linear model (w₁ − w₀ of the softmax layer), else None."""
        return None


class CNN(TorchLearner):
    name = "cnn"
    Params = CNNParams
    conv = True

    def _build(self, in_channels, n_inputs, n_classes):
        from trainables.learners.networks import SmallCNN

        return SmallCNN(in_channels, n_classes, width=self.cnn_width, hidden=self.hidden_units)


class MLPLearner(TorchLearner):
    name = "mlp"
    Params = MLPParams

    def _build(self, in_channels, n_inputs, n_classes):
        from trainables.learners.networks import MLP

        return MLP(n_inputs, n_classes, hidden=self.hidden_units, layers=self.hidden_layers)


class ResNet18(TorchLearner):
    """ResNet-18 for small images; BatchNorm becomes GroupNorm under the ``dp_sgd`` defence."""

    name = "resnet18"
    conv = True

    def _build(self, in_channels, n_inputs, n_classes):
        from trainables.learners.networks import SmallImageResNet18

        return SmallImageResNet18(in_channels, n_classes)


class TorchLogistic(TorchLearner):
    """Multinomial logistic regression trained by (DP-)SGD, so DP noise can be swept for it too."""

    name = "torch_logistic"

    def _build(self, in_channels, n_inputs, n_classes):
        from trainables.learners.networks import LogisticModel

        return LogisticModel(n_inputs, n_classes)

    def weight_vector(self) -> np.ndarray | None:
        W = self.model_.out.weight.detach().double().cpu().numpy()
        return W[1] - W[0] if W.shape[0] == 2 else None
