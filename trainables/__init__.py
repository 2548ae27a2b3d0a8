"""What one result computes: data, attacks, learners, defences, measures, and the trial.

Rooms: ``data/`` (datasets and file formats), ``attacks/`` (triggers, patterns, poisonings,
clean-label hardening), ``learners/`` (scikit-learn and torch estimators, networks, the training
loop, latent regularisers), ``defences``, ``measures/`` (metrics, learning curves, the slope, the
KKT/Hessian algebra, influence, gradients, dynamics), ``components`` (registries and parameter
checks), ``trial`` (one Ray Tune trial: config -> stored rows), ``epochs`` (per-epoch reports of
network trials for Ray Tune's schedulers).
"""

from __future__ import annotations

from backdoor_sweep.exports import lazy_exports

_WHERE = {
    "BackdoorTest": "defences",
    "COUPLED_REGULARISERS": "defences",
    "CleanFinetune": "defences",
    "CleanFinetuneParams": "defences",
    "Component": "components",
    "Hyperparameters": "components",
    "DEFENCES": "defences",
    "DPSGD": "defences",
    "DPSGDParams": "defences",
    "EPOCH_METRICS": "epochs",
    "EpochReporter": "epochs",
    "Defence": "defences",
    "Filter": "defences",
    "FilterParams": "defences",
    "NoDefence": "defences",
    "NoParams": "components",
    "Params": "components",
    "PreparedResult": "trial",
    "Registry": "components",
    "ResultRows": "trial",
    "describe_error": "components",
    "draw_trusted": "defences",
    "hyperparameter_init": "components",
    "make_defence": "defences",
    "own_label_probability": "defences",
    "parse_params": "components",
    "prepare_result": "trial",
    "run_result": "trial",
    "seed_sequence": "trial",
    "split_train_val": "defences",
    "split_validation": "epochs",
    "tune_trial": "trial",
    "with_origin": "components",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
