"""Defences (docs/science.md §8): how the defender trains on the (possibly poisoned) training set.

A defence wraps the fit: ``train(learner, poisoned, data, rng, test)`` fits ``learner`` in place and
returns extra columns for the store; ``run_result`` then measures the final ``clean_acc``/``asr`` on the
dataset's test split (``test``: clean and triggered, handed over so a defence can also measure
mid-way). One defence per result; the ``defence`` key is a grid axis like any other.

- ``none``: fit on everything.
- ``dp_sgd``: DP-SGD through Opacus on a network learner (``cnn``, ``mlp``, ``resnet18``,
  ``torch_logistic``): Poisson sampling, per-sample clipping to ``max_grad_norm``, Gaussian noise of
  std ``dp_noise``·``max_grad_norm``; ``dp_epsilon`` at ``dp_delta`` from the RDP accountant (null
  when ``dp_noise`` = 0: clipping alone has no finite ε). ``max_grad_norm: null`` (with
  ``dp_noise: 0``) is the plain-SGD baseline with the same effective learning rate: the same
  Poisson batches and normalisation by the expected batch size, no clipping, no noise. DP-SGD is
  written only this way (its parameters are not learner parameters). Batch-coupled regularisers
  (manifold mixup, contrastive, SNNL) are refused with it: per-sample clipping would no longer
  bound one sample's influence.
- ``clean_finetune``: the 76/19/5 protocol, see `CleanFinetune`.
- ``filter``: the trusted-subset filtering detector for any learner, see `Filter`.

Regularisation strength (C, γ, weight decay) and the latent regularisers (``logit_squeeze_weight``,
``manifold_mixup_weight``, ``contrastive_weight``, ``snnl_weight``) are learner hyperparameters,
not defences: they combine with every defence and are grid axes directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from backdoor_sweep.errors import SweepError, shown
from trainables.attacks.poisoning import Poisoned
from trainables.components import Component, Params, Registry, parse_params
from trainables.data.datasets import Dataset
from trainables.learners import LEARNERS
from trainables.measures.metrics import accuracy, attack_metrics

Fraction = Annotated[float, Field(gt=0, lt=1)]
PosInt = Annotated[int, Field(ge=1)]
COUPLED_REGULARISERS = ("manifold_mixup_weight", "contrastive_weight", "snnl_weight")


@dataclass(frozen=True)
class BackdoorTest:
    """The test split clean (TS) and triggered (TS+BT), and the target label index."""

    X: np.ndarray
    y: np.ndarray
    X_triggered: np.ndarray
    target: int

    def metrics(self, learner) -> dict[str, float]:
        """``attack_metrics`` of ``learner`` now (clean_acc, asr, …)."""
        return attack_metrics(
            self.y, learner.predict(self.X), learner.predict(self.X_triggered), self.target
        )


class Defence(Component):
    def train(
        self,
        learner,
        poisoned: Poisoned,
        data: Dataset,
        rng: np.random.Generator,
        test: BackdoorTest | None = None,
    ) -> dict:
        """Fit ``learner`` in place; return extra result columns."""
        raise NotImplementedError


def _origin(origins: dict, key: str) -> str:
    return origins.get(key, key)


def _needs_network(defence: str, learner_name: object, field: str = "learner.name") -> None:
    cls = LEARNERS.get(learner_name)
    if cls is None or getattr(cls, "kind", "") != "torch":
        nets = ", ".join(
            sorted(n for n, c in LEARNERS.items() if getattr(c, "kind", "") == "torch")
        )
        raise SweepError(
            f"{field} must be a network learner ({nets}) with defence {defence}; got {shown(learner_name)}"
        )


class NoDefence(Defence):
    """Train on the whole (poisoned) training set."""

    name = "none"

    def train(self, learner, poisoned, data, rng, test=None):
        learner.fit(poisoned.X, poisoned.y)
        return {}


class DPSGDParams(Params):
    dp_noise: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0
    #: null = no clipping (only with dp_noise 0: the plain-SGD baseline)
    max_grad_norm: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = 1.0
    dp_delta: Fraction = 1e-5


class DPSGD(Defence):
    """DP-SGD with Opacus; ``max_grad_norm: null`` is the plain-SGD baseline (module docstring)."""

    name = "dp_sgd"
    Params = DPSGDParams
    check_keys = ("learner", *DPSGDParams.model_fields, *COUPLED_REGULARISERS)

    @classmethod
    def check_cell(cls, cell, origins, info=None):
        _needs_network(cls.name, cell["learner"], _origin(origins, "learner"))
        p = parse_params(cls, cell, origins)
        _check_dp(p, lambda k: _origin(origins, k))
        learner_params = LEARNERS[cell["learner"]].Params.model_fields
        for key in COUPLED_REGULARISERS:
            value = cell.get(key, learner_params[key].default if key in learner_params else 0)
            if value:
                raise SweepError(
                    f"{_origin(origins, key)} must be 0 with defence dp_sgd (it couples the samples "
                    f"of a batch, so per-sample clipping would not bound one sample's influence); got {shown(value)}"
                )

    def train(self, learner, poisoned, data, rng, test=None):
        _needs_network(self.name, getattr(learner, "name", type(learner).__name__), "learner")
        _check_dp(self.params, lambda k: k)
        regs = learner.regularisers()
        if regs.coupled:
            raise SweepError(
                f"{regs.coupled[0]}_weight must be 0 with defence dp_sgd; got a non-zero weight"
            )
        p = self.params
        learner.set_params(
            sampling="poisson",
            dp_noise=p.dp_noise,
            max_grad_norm=p.max_grad_norm,
            dp_delta=p.dp_delta,
        )
        learner.fit(poisoned.X, poisoned.y)
        return {"dp_epsilon": learner.dp_epsilon_}


def _check_dp(p: DPSGDParams, origin) -> None:
    if p.dp_noise > 0 and p.max_grad_norm is None:
        raise SweepError(
            f"{origin('max_grad_norm')} must be a positive number when dp_noise > 0 "
            f"(the noise std is dp_noise·max_grad_norm); got None"
        )


class CleanFinetuneParams(Params):
    #: share of the training rows in the trusted clean-set (19/95 = the 76/19/5 protocol)
    finetune_clean_fraction: Fraction = 0.2
    finetune_epochs: PosInt = 10
    #: learning rate of the fine-tune (null = the learner's lr)
    finetune_lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    finetune_patience: PosInt = 5
    finetune_max_epochs: PosInt = 100


def split_train_val(idx: np.ndarray, train_share: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """The first ``train_share`` of (already shuffled) indices to train, the rest to validate."""
    cut = int(round(train_share * len(idx)))
    return idx[:cut], idx[cut:]


class CleanFinetune(Defence):
    """Clean fine-tuning (docs/science.md §8), on a network learner.

    The training split plays the 95 % of the 76/19/5 protocol: a seeded ``finetune_clean_fraction``
    (default 19/95 = 1/5) of its rows is the trusted clean-set — poisoned rows drawn into it are
    discarded, since the defender trusts it — and the rest is the poison-set, which keeps the
    attack's poison rate in expectation. The 5 % adversarial-test set is the dataset's test split,
    triggered (TS+BT): disjoint from training and the same for every defence, so ``asr`` and
    ``asr_before_finetune`` compare with the other sweeps. Each set is split 80/20 into train and
    validation; the learner trains on the poison-set train part until its accuracy on the
    poison-set validation part has not improved for ``finetune_patience`` epochs (best epoch kept),
    then fine-tunes on the clean-set train part for ``finetune_epochs``. The clean-set validation
    part gives ``finetune_val_acc``. The index arrays of the last run are kept in ``splits_``.
    """

    name = "clean_finetune"
    Params = CleanFinetuneParams
    check_keys = ("learner",)

    @classmethod
    def check_cell(cls, cell, origins, info=None):
        _needs_network(cls.name, cell["learner"], _origin(origins, "learner"))

    def train(self, learner, poisoned, data, rng, test=None):
        _needs_network(self.name, getattr(learner, "name", type(learner).__name__), "learner")
        p = self.params
        n = len(poisoned.y)
        order = rng.permutation(n)
        n_clean = int(round(p.finetune_clean_fraction * n))
        clean_part, poison_set = order[:n_clean], order[n_clean:]
        clean_set = clean_part[~poisoned.is_poison[clean_part]]
        poison_train, poison_val = split_train_val(poison_set)
        clean_train, clean_val = split_train_val(clean_set)
        self.splits_ = {
            "poison_train": poison_train,
            "poison_val": poison_val,
            "clean_train": clean_train,
            "clean_val": clean_val,
        }
        X, y = poisoned.X, poisoned.y
        learner.fit_until_plateau(
            X[poison_train],
            y[poison_train],
            X[poison_val],
            y[poison_val],
            patience=p.finetune_patience,
            max_epochs=p.finetune_max_epochs,
        )
        before = test.metrics(learner) if test is not None else {}
        epochs_before = learner.epochs_trained_
        learner.fine_tune(
            X[clean_train], y[clean_train], epochs=p.finetune_epochs, lr=p.finetune_lr
        )
        val_acc = accuracy(y[clean_val], learner.predict(X[clean_val])) if len(clean_val) else None
        return {
            "asr_before_finetune": before.get("asr"),
            "clean_acc_before_finetune": before.get("clean_acc"),
            "epochs_before_finetune": int(epochs_before),
            "n_poison_set": int(len(poison_set)),
            "n_clean_set": int(len(clean_set)),
            "finetune_val_acc": val_acc,
        }


class FilterParams(Params):
    #: share of the training rows, drawn among the clean ones, the detector trusts and trains on
    filter_trusted_fraction: Fraction = 0.1
    #: flag the k = round(filter_fraction·n) lowest-scored rows; null: k = the number of poisons
    filter_fraction: Fraction | None = None
    #: refit the learner without the flagged rows (else the filter only measures, and the
    #: learner is fitted on everything)
    filter_retrain: bool = False


def own_label_probability(model, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The probability ``model`` gives each sample's own label: ``predict_proba`` if it has one,
    else a sigmoid (binary) or softmax (multiclass) of ``decision_function``. 0 for a label the
    model never saw."""
    classes = np.asarray(model.classes_)
    if hasattr(model, "predict_proba"):
        P = np.asarray(model.predict_proba(X), dtype=np.float64)
    else:
        d = np.asarray(model.decision_function(X), dtype=np.float64)
        if d.ndim == 1:
            p1 = 1.0 / (1.0 + np.exp(-d))
            P = np.column_stack([1.0 - p1, p1])
        else:
            z = np.exp(d - d.max(axis=1, keepdims=True))
            P = z / z.sum(axis=1, keepdims=True)
    pos = np.searchsorted(classes, y)
    known = (pos < len(classes)) & (classes[np.minimum(pos, len(classes) - 1)] == y)
    out = np.zeros(len(y))
    out[known] = P[np.flatnonzero(known), pos[known]]
    return out


def draw_trusted(
    y: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """``k`` of ``candidates``, every label among them represented as far as k allows."""
    shuffled = rng.permutation(candidates)
    by_label = [shuffled[y[shuffled] == c] for c in np.unique(y[shuffled])]
    rounds = max((len(g) for g in by_label), default=0)
    interleaved = [g[i] for i in range(rounds) for g in by_label if i < len(g)]
    return np.sort(np.asarray(interleaved[:k], dtype=np.int64))


class Filter(Defence):
    """Trusted-subset filtering detection (docs/science.md §8), for any learner.

    A copy of the learner (same hyperparameters) is fitted on ``filter_trusted_fraction`` of the
    training rows, drawn among the clean ones with every class represented; every training row is
    scored by the probability that copy gives its own label; the k lowest are flagged.
    ``filter_recall`` = flagged poisons / all poisons (null without poisons), ``filter_precision``
    = flagged poisons / k. With ``filter_retrain`` the learner is fitted without the flagged rows.
    """

    name = "filter"
    Params = FilterParams

    def train(self, learner, poisoned, data, rng, test=None):
        p = self.params
        X, y, poison = poisoned.X, poisoned.y, poisoned.is_poison
        n, n_poison = len(y), int(poison.sum())
        n_trusted = max(2, int(round(p.filter_trusted_fraction * n)))
        trusted = draw_trusted(y, np.flatnonzero(~poison), n_trusted, rng)
        from sklearn.base import clone

        detector = clone(learner).fit(X[trusted], y[trusted])
        scores = own_label_probability(detector, X, y)
        k = n_poison if p.filter_fraction is None else int(round(p.filter_fraction * n))
        flagged = np.argsort(scores, kind="stable")[:k]
        self.scores_, self.flagged_, self.trusted_ = scores, flagged, trusted
        hits = int(poison[flagged].sum())
        if p.filter_retrain and k:
            keep = np.setdiff1d(np.arange(n), flagged)
            learner.fit(X[keep], y[keep])
        else:
            learner.fit(X, y)
        return {
            "filter_recall": hits / n_poison if n_poison else None,
            "filter_precision": hits / k if k else None,
            "filter_n_flagged": int(k),
            "n_trusted": int(len(trusted)),
        }


DEFENCES = Registry("defence", NoDefence, DPSGD, CleanFinetune, Filter)


def make_defence(config: dict) -> Defence:
    return DEFENCES.get_class(config.get("defence", "none"), "defence").from_config(config)
