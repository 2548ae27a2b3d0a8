"""Training dynamics of networks: how fast are poisoned samples learnt?

After every training epoch (the learner's ``on_epoch`` observer, `trainables.learners.torch_learners`) we
record the mean cross-entropy of

- ``loss_clean``: the clean training rows (a seeded subsample of at most ``MAX_CLEAN`` rows);
- ``loss_poison``: the poisoned rows as trained on (trigger, poisoned label);
- ``loss_poison_untriggered``: the same rows *without* the trigger — the images before the trigger
  was applied, with the poisoned labels. Memorising the poisons drives this one down too; learning
  the trigger leaves it high while ``loss_poison`` falls.

The untriggered images are rebuilt by running the result's poisoning again with the same seeded
generator and an identity trigger: every strategy applies the trigger last (dirty-label, supplant,
clean-label after its hardening — so clean-label rows keep their hardening), so the same rows are
chosen and only the trigger is missing; the rebuild is checked against the poisoned set. Epochs of
a defence's later phase that does not go through the learner's training loop (clean fine-tuning's
``fine_tune``) are not recorded.
"""

from __future__ import annotations

import numpy as np

from trainables.attacks.poisoning import Poisoned, make_poisoning
from trainables.attacks.triggers import Trigger
from trainables.components import NoParams
from trainables.measures.losses import mean_loss

DYNAMICS_COLUMNS = ("epoch", "loss_clean", "loss_poison", "loss_poison_untriggered")
#: clean rows evaluated per epoch at most (a seeded subsample above that)
MAX_CLEAN = 5000

__all__ = ["DYNAMICS_COLUMNS", "DynamicsRecorder", "untriggered_poisons", "watch_dynamics"]


class IdentityTrigger(Trigger):
    """Changes nothing: the poisoning's choices without the trigger (not a registered trigger)."""

    name = "identity"

    def _apply(self, X, rng):
        return X


def untriggered_poisons(config: dict, data, poisoned: Poisoned) -> np.ndarray:
    """The poisoned rows of ``poisoned`` as they were before the trigger, in row order."""
    from trainables.trial import seed_sequence

    seed = int(config["seed"])
    identity = IdentityTrigger(NoParams()).fit(data.X_train, np.random.default_rng(0))
    again = make_poisoning(config).poison(
        data.X_train,
        data.y_train,
        identity,
        data.class_index(config["target"]),
        data.n_classes,
        seed_sequence(seed, "poison"),
        classes=data.classes,
    )
    if not (
        np.array_equal(again.is_poison, poisoned.is_poison) and np.array_equal(again.y, poisoned.y)
    ):
        raise RuntimeError("rebuilding the poisoned rows without the trigger chose other rows")
    return again.X[again.is_poison]


class DynamicsRecorder:
    """``on_epoch`` observer: appends one row of ``DYNAMICS_COLUMNS`` per epoch to ``rows``."""

    def __init__(self, X_clean, y_clean, X_poison, y_poison, X_untriggered) -> None:
        self.sets = {
            "loss_clean": (X_clean, y_clean),
            "loss_poison": (X_poison, y_poison),
            "loss_poison_untriggered": (X_untriggered, y_poison),
        }
        self.rows: list[dict] = []

    def __call__(self, learner, epoch: int) -> None:
        row: dict = {"epoch": int(epoch)}
        for column, (X, y) in self.sets.items():
            row[column] = mean_loss(learner, X, y) if len(y) else float("nan")
        self.rows.append(row)


def watch_dynamics(config: dict, learner, poisoned: Poisoned, data) -> DynamicsRecorder | None:
    """Attach a recorder to a network learner (None for the others, which have no epochs)."""
    if getattr(learner, "kind", "") != "torch":
        return None
    from trainables.trial import seed_sequence

    clean = np.flatnonzero(~poisoned.is_poison)
    if len(clean) > MAX_CLEAN:
        rng = seed_sequence(int(config["seed"]), "dynamics")
        clean = np.sort(rng.choice(clean, size=MAX_CLEAN, replace=False))
    poison = poisoned.is_poison
    recorder = DynamicsRecorder(
        poisoned.X[clean],
        poisoned.y[clean],
        poisoned.X[poison],
        poisoned.y[poison],
        untriggered_poisons(config, data, poisoned),
    )
    learner.on_epoch = recorder
    return recorder
