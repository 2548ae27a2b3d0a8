"""From a validated spec to Ray Tune trials: which results each trial computes, and their ids.

A *result* is one grid point and one seed (one row of the store). A *trial* is the list of results
that share the values of the outer axes (by default the learner's hyperparameters, one
*configuration*): the inner axes (by default the attack's) and the seeds are looped inside the
trial. Ids are hashes of the configurations, so the same spec always yields the same ids — which
is what makes resuming exact. The configurations are the grid's cells, or those a search draws
(`sweep.search`); `plan_configurations` turns any of them into trials the same way.
With an ``execution.scheduler`` every trial is one result (a scheduler stops trials, not
results).
"""

from __future__ import annotations

import itertools
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


def _per_result(spec: Spec) -> bool:
    """Under an ``execution.scheduler`` a trial is one result: nothing is looped inside it."""
    return spec.execution.scheduler is not None


def _inner_axes(spec: Spec) -> list[str]:
    return [] if _per_result(spec) else list(spec.inner_axes())


def outer_axes(spec: Spec) -> list[str]:
    """Grid axes that tell trials apart (every axis not looped inside a trial)."""
    inner = set(_inner_axes(spec))
    return [a for a in spec.grid if a not in inner]


def inner_cells(spec: Spec) -> list[dict[str, Any]]:
    """Every combination of the inner axes' values (one attack setting each), in grid order."""
    axes = _inner_axes(spec)
    return [
        dict(zip(axes, v, strict=True)) for v in itertools.product(*(spec.grid[a] for a in axes))
    ]


def grid_configurations(spec: Spec) -> list[dict[str, Any]]:
    """Every combination of the outer axes' lists, in grid order."""
    axes = outer_axes(spec)
    return [
        dict(zip(axes, v, strict=True)) for v in itertools.product(*(spec.grid[a] for a in axes))
    ]


def plan_trials(spec: Spec) -> list[TrialPlan]:
    """All trials of the sweep's configurations — the grid's, or a random search's draw — in order.

    An Optuna search has no plan before it runs (each configuration depends on the scores of the
    earlier ones) and a slope screen plans in two stages: see `sweep.searching.stored_plans`.
    """
    if spec.search.algorithm == "random":
        from sweep.sampling import sample_configurations

        return plan_configurations(spec, sample_configurations(spec))
    if spec.search.algorithm == "optuna":
        raise ValueError(f"sweep {spec.name!r} samples its configurations as it runs (optuna)")
    return plan_configurations(spec, grid_configurations(spec))


def plan_configurations(
    spec: Spec,
    configurations: list[dict[str, Any]],
    *,
    inner: list[dict[str, Any]] | None = None,
    stage: str | None = None,
    extra: dict[str, Any] | None = None,
) -> list[TrialPlan]:
    """One trial per configuration (values of the outer axes): each inner cell × every seed.

    ``inner`` replaces the grid's attack settings (a slope screen's probe); ``stage`` marks the
    results (a column) and enters the trial and result ids, so a stage's trial never collides
    with another stage's trial of the same configuration; ``extra`` adds flat keys to every
    result (e.g. the learning curves a screen needs).
    """
    from sweep.search import SAMPLER_COLUMN, STAGE_COLUMN

    base, _ = spec.base_config()
    keys = {"curves": spec.curves.model_dump()} if spec.curves.enabled else {}
    keys.update(spec.explain.result_keys())  # flat keys, columns of the trials table
    if spec.search.sampler is not None:
        keys[SAMPLER_COLUMN] = spec.search.sampler
    if stage is not None:
        keys[STAGE_COLUMN] = stage
    keys.update(extra or {})
    inner = inner_cells(spec) if inner is None else inner
    groups: dict[str, TrialPlan] = {}
    for configuration in configurations:
        for setting in inner:
            merged = {**configuration, **setting}
            cell = {**base, **{a: merged[a] for a in spec.grid if a in merged}}
            cfg = normalise(cell)
            outer = {a: cfg[a] for a in configuration}
            for seed in spec.seeds:
                # under a scheduler each seed is its own trial (one result per trial)
                ids = {**outer, "seed": seed} if _per_result(spec) else outer
                key: dict[str, Any] = {"sweep": spec.name, "outer": ids}
                if stage is not None:
                    key["stage"] = stage
                trial_id = stable_hash(key)
                plan = groups.setdefault(trial_id, TrialPlan(trial_id, ids, []))
                result = {**cfg, "seed": seed, **keys, **result_keys(spec, cfg)}
                result["result_id"] = stable_hash({"sweep": spec.name, "config": result})
                if any(r["result_id"] == result["result_id"] for r in plan.results):
                    continue  # the same configuration drawn twice: one trial, its results once
                plan.results.append(result)
    return list(groups.values())
