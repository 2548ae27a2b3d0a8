"""Per-epoch reports of a network trial, for Ray Tune's schedulers (docs/science.md §9: a
result a scheduler stopped never takes part in the robust choice).

When a result's configuration has ``val_fraction`` (the spec has an ``execution.scheduler``), a
seeded ``val_fraction`` of the training split is held out *before* anything else happens
(`split_validation`): the trigger is fitted, the poisons drawn and the learner trained on the rest,
so the held-out samples are clean. After every epoch `EpochReporter` measures

- ``train_loss``: the epoch's mean batch objective (what the optimiser minimised);
- ``val_clean_acc``: accuracy on the held-out samples;
- ``val_asr``: the attack success rate on them, triggered (non-target samples predicted as the
  target once the trigger is applied — the test's definition, trainables/measures/metrics.py);

and hands ``{epoch, train_loss, val_clean_acc, val_asr}`` to ``send`` (``tune.report``). The last
epoch's metrics are not sent on their own: they travel with the finished result's row, so a
scheduler that stops a trial at its final epoch cannot lose the result (`last_epoch`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from trainables.data.datasets import Dataset

EPOCH_METRICS = ("train_loss", "val_clean_acc", "val_asr")

__all__ = ["EPOCH_METRICS", "EpochReporter", "split_validation"]


def split_validation(
    data: Dataset, fraction: float, rng: np.random.Generator
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """(the dataset with a smaller training split, held-out images, their labels).

    ``round(fraction·n)`` training rows (at least 1, and at least 1 left to train on) drawn
    with ``rng``; the test split is untouched.
    """
    n = len(data.y_train)
    n_val = min(max(1, int(round(fraction * n))), n - 1)
    order = rng.permutation(n)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    reduced = replace(data, X_train=data.X_train[train], y_train=data.y_train[train])
    return reduced, data.X_train[val], data.y_train[val]


class EpochReporter:
    """``on_epoch`` observer of a network learner: per-epoch metrics on the held-out samples.

    ``previous`` (another observer, e.g. the dynamics recorder) is called first. ``last_epoch``
    is the number of epochs the fit runs: that epoch's metrics are kept in ``last`` and not sent.
    """

    def __init__(
        self,
        validation,
        send: Callable[[dict], None] | None,
        last_epoch: int,
        previous: Callable | None = None,
    ) -> None:
        self.validation, self.send, self.last_epoch = validation, send, last_epoch
        self.previous = previous
        self.last: dict = {}

    def __call__(self, learner, epoch: int) -> None:
        if self.previous is not None:
            self.previous(learner, epoch)
        m = self.validation.metrics(learner)
        self.last = {
            "epoch": int(epoch),
            "train_loss": getattr(learner, "train_loss_", None),
            "val_clean_acc": m["clean_acc"],
            "val_asr": m["asr"],
        }
        if self.send is not None and epoch < self.last_epoch:
            self.send(dict(self.last))
