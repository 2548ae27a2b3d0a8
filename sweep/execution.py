"""How trials run: devices, precision, determinism and the Ray Tune scheduler of a spec's
``execution`` section, their checks, and what they add to each result's configuration.

- ``deterministic`` (default true): network learners train with deterministic algorithms, so the
  same seed on the same device gives identical metrics; ``false`` lets cuDNN autotune (faster on a
  GPU, not reproducible). ``precision``: ``fp32`` (default) or ``bf16`` (autocast; GPUs with
  bfloat16 only). Both become flat keys (store columns) of every network result.
- ``scheduler``: a Ray Tune scheduler that reads the per-epoch reports of network trials
  (`trainables.epochs`). ``asha`` stops configurations whose ``metric`` trails the others at
  each rung; ``fifo`` stops nothing (the same reports and validation split, to compare with). A
  scheduler stops *trials*, so with one every trial is one result (one configuration, one seed):
  ``execution.inner_axes`` must be ``auto`` or ``[]``, and the sweep a grid: a search's trial is
  one configuration against every attack setting and seed (`sweep.search.check_search`). A
  ``validation_fraction`` of the training split is held out for the per-epoch metrics (the key
  ``val_fraction`` of every result).

Checks that need no cluster are in `check_execution` (part of spec validation); `check_devices`
runs where Ray is up, before anything is written: a GPU asked for where Ray sees none, or bf16
on a GPU without it, is one line naming the field, the value and what is allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field

from backdoor_sweep.errors import SweepError
from trainables.components import NumbersOnly
from trainables.epochs import EPOCH_METRICS

if TYPE_CHECKING:
    from sweep.spec import Spec

#: defences that train through the learner's own epochs (clean_finetune chooses its own)
SCHEDULED_DEFENCES = ("none", "dp_sgd", "filter")
#: seconds the bf16 probe may wait for a GPU worker
PROBE_TIMEOUT_S = 120


class SchedulerSection(NumbersOnly):
    """``execution.scheduler``: ASHA (or FIFO) over the per-epoch reports of network trials."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["asha", "fifo"]
    metric: str = "val_clean_acc"
    mode: Literal["max", "min"] = "max"
    #: epochs every trial runs before ASHA may stop it
    grace_period: Annotated[int, Field(ge=1)] = 1
    #: ASHA keeps the best 1/reduction_factor of the trials at each rung
    reduction_factor: Annotated[float, Field(gt=1, le=100)] = 3.0
    #: share of the training split held out for val_clean_acc and val_asr
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1


def _learner_class(name: str):
    from trainables.learners import LEARNERS

    return LEARNERS[name]


def _is_network(name: str) -> bool:
    return getattr(_learner_class(name), "kind", "") == "torch"


def _networks() -> str:
    from trainables.learners import LEARNERS

    return ", ".join(sorted(n for n, c in LEARNERS.items() if getattr(c, "kind", "") == "torch"))


def _network_names(spec: Spec) -> list[str]:
    from sweep.validation import values_of

    return [name for name in values_of(spec, "learner") if _is_network(name)]


def check_execution(spec: Spec) -> None:
    """Refuse execution settings the sweep cannot honour (one line each). Works on the values
    each key takes, never cell by cell (sweep/validation.py)."""
    from sweep.validation import values_of

    ex = spec.execution
    defences = values_of(spec, "defence")
    if ex.precision == "bf16":
        if ex.gpus_per_trial <= 0:
            raise SweepError(
                "execution.precision bf16 needs a GPU (execution.gpus_per_trial > 0; CPU "
                f"training runs fp32); got gpus_per_trial {ex.gpus_per_trial:g}"
            )
        clipped = _values_or_default(spec, "max_grad_norm", "defence")
        if "dp_sgd" in defences and any(v is not None for v in clipped):
            raise SweepError(
                "execution.precision must be fp32 with defence dp_sgd (Opacus's per-sample "
                "gradients are fp32); got bf16"
            )
    sched = ex.scheduler
    if sched is None:
        return
    if ex.inner_axes != "auto" and ex.inner_axes:
        raise SweepError(
            f"execution.inner_axes must be [] (or left out) with execution.scheduler {sched.name}: "
            f"a scheduler stops trials, so each trial is one result; got {list(ex.inner_axes)}"
        )
    if sched.metric not in EPOCH_METRICS:
        raise SweepError(
            f"execution.scheduler.metric must be one of {', '.join(EPOCH_METRICS)} (what a network "
            f"trial reports after every epoch); got {sched.metric!r}"
        )
    for name in values_of(spec, "learner"):
        if not _is_network(name):
            raise SweepError(
                f"execution.scheduler needs network learners ({_networks()}), which report after "
                f"every epoch; learner {name!r} has no epochs"
            )
    for name in defences:
        if name not in SCHEDULED_DEFENCES:
            raise SweepError(
                f"execution.scheduler works with defence {', '.join(SCHEDULED_DEFENCES)}; "
                f"got {name!r} (it chooses its own epochs)"
            )
    most = max_epochs(spec)
    if sched.grace_period > most:
        raise SweepError(
            f"execution.scheduler.grace_period must be at most the epochs trained ({most}); "
            f"got {sched.grace_period}"
        )


def _values_or_default(spec: Spec, key: str, kind: str) -> list[Any]:
    """The values ``key`` takes, or the default of the ``kind`` component that reads it."""
    from sweep.validation import COMPONENT_KINDS, values_of

    base, _ = spec.base_config()
    if key in spec.grid or key in base:
        return values_of(spec, key)
    names = values_of(spec, kind)
    registry = COMPONENT_KINDS[kind]
    fields = [registry[n].Params.model_fields.get(key) for n in names if n in registry]
    return [f.default for f in fields if f is not None]


def max_epochs(spec: Spec) -> int:
    """The most epochs any network result of the sweep trains (ASHA's max_t)."""
    return max((int(v) for v in _values_or_default(spec, "epochs", "learner")), default=1)


def result_keys(spec: Spec, config: dict[str, Any]) -> dict[str, Any]:
    """Flat keys the execution section adds to a result's configuration (store columns)."""
    if not _is_network(config["learner"]):
        return {}
    keys: dict[str, Any] = {
        "deterministic": spec.execution.deterministic,
        "precision": spec.execution.precision,
    }
    if spec.execution.scheduler is not None:
        keys["val_fraction"] = spec.execution.scheduler.validation_fraction
    return keys


def make_scheduler(spec: Spec):
    """The Ray Tune scheduler of the spec (None without one)."""
    sched = spec.execution.scheduler
    if sched is None:
        return None
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if sched.name == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="epoch",
        metric=sched.metric,
        mode=sched.mode,
        max_t=max_epochs(spec),
        grace_period=sched.grace_period,
        reduction_factor=sched.reduction_factor,
    )


def _too_few_gpus(spec: Spec, gpus: float, where: str) -> None:
    if gpus < spec.execution.gpus_per_trial:
        raise SweepError(
            f"execution.gpus_per_trial must be at most the GPUs there are ({gpus:g} {where}); "
            f"got {spec.execution.gpus_per_trial:g}"
        )


def check_local_gpus(spec: Spec) -> None:
    """Without a cluster, before the store is touched: this machine has the GPUs asked for."""
    if spec.execution.gpus_per_trial <= 0:
        return
    import torch

    _too_few_gpus(spec, float(torch.cuda.device_count()), "CUDA devices on this machine")


def check_devices(spec: Spec) -> None:
    """With Ray up: the GPUs asked for exist, and bf16 runs on them. Raises `SweepError`."""
    ex = spec.execution
    if ex.gpus_per_trial <= 0:
        return
    import ray

    _too_few_gpus(spec, float(ray.cluster_resources().get("GPU", 0)), "GPUs in the Ray cluster")
    if ex.precision == "bf16":
        probe = ray.remote(num_gpus=min(ex.gpus_per_trial, 1), num_cpus=0)(_bf16_supported)
        try:
            name, ok = ray.get(probe.remote(), timeout=PROBE_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise SweepError(
                f"execution.precision bf16: no GPU worker answered within {PROBE_TIMEOUT_S} s "
                "to check bfloat16 support; is every GPU busy?"
            ) from None
        if not ok:
            raise SweepError(
                f"execution.precision must be fp32 on {name} (no bfloat16: compute capability "
                "8.0 or later needed); got bf16"
            )


def _bf16_supported() -> tuple[str, bool]:
    """(device name, bfloat16 supported) on the GPU Ray assigned to this task."""
    import torch

    if not torch.cuda.is_available():
        return "a worker without CUDA", False
    return torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported())
