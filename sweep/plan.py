"""From a validated spec to Ray Tune trials: which results each trial computes, and their ids.

A *result* is one grid point and one seed (one row of the store). A *trial* is the list of results
that share the values of the outer axes (by default the learner's hyperparameters): the inner axes
(by default the attack's) and the seeds are looped inside the trial. With an
``execution.scheduler`` every trial is one result (a scheduler stops trials, not results).
Ids are hashes of the configurations, so the same spec always yields the same ids — which is what
makes resuming exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweep.execution import result_keys
from sweep.spec import COMPONENT_KINDS, Spec, stable_hash


@dataclass(frozen=True)
class TrialPlan:
    trial_id: str
    outer: dict[str, Any]
    results: list[dict[str, Any]]


def normalise(cell: dict[str, Any]) -> dict[str, Any]:
    """Coerce every component parameter through its model (YAML's ``1`` becomes ``1.0`` for C)."""
    out = dict(cell)
    for kind, registry in COMPONENT_KINDS.items():
        cls = registry[cell[kind]]
        own = {k: cell[k] for k in cls.Params.model_fields if k in cell}
        out.update(cls.Params(**own).model_dump(mode="json"))
    return out


def plan_trials(spec: Spec) -> list[TrialPlan]:
    """All trials of the sweep, in grid order, each with its results (results)."""
    per_result = spec.execution.scheduler is not None
    inner = set() if per_result else set(spec.inner_axes())
    outer_axes = [a for a in spec.grid if a not in inner]
    extra = {"curves": spec.curves.model_dump()} if spec.curves.enabled else {}
    extra.update(spec.explain.result_keys())  # flat keys, columns of the trials table
    groups: dict[str, TrialPlan] = {}
    for cell in spec.cells():
        cfg = normalise(cell)
        outer = {a: cfg[a] for a in outer_axes}
        for seed in spec.seeds:
            key = {**outer, "seed": seed} if per_result else outer
            trial_id = stable_hash({"sweep": spec.name, "outer": key})
            plan = groups.setdefault(trial_id, TrialPlan(trial_id, key, []))
            result = {**cfg, "seed": seed, **extra, **result_keys(spec, cfg)}
            result["result_id"] = stable_hash({"sweep": spec.name, "config": result})
            plan.results.append(result)
    return list(groups.values())
