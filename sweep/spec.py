"""Sweep specs: YAML in, a validated grid of flat configurations out.

A spec names a dataset, a learner, an attack (trigger, poisoning, target), grid axes and seeds. All
component parameters live in one flat namespace (``C``, ``gamma``, ``trigger_size``,
``poison_rate``…), which is also the store's column names; a grid axis is any such name (or
``learner``, ``trigger``, ``poisoning``, ``target`` themselves). Everything is checked before
anything runs: unknown names, out-of-range values, a trigger larger than the image, a target that
is not a class — each gives one `SweepError` line naming the field, the value and what is allowed.
The file is read within limits (`sweep.specfile`) and the checks are in `sweep.validation`.

A spec's `Spec.digest` fingerprints what determines its results — not where the store is, the
description, or how many trials run at once — so a sweep resumes from a store that was moved,
copied or named by another path.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from backdoor_sweep.errors import SweepError, shown
from search_spaces import DEFAULT_SPEC, PRESETS_DIR  # noqa: F401  (re-exported)
from sweep.execution import SchedulerSection
from sweep.schema import SWEEP_NAME_PATTERN
from sweep.search import (
    Range,
    SearchSection,
    n_configurations,
    n_inner_cells,
    parse_range,
    planned_results,
    smoke_search,
)
from sweep.specfile import read_spec_file
from sweep.validation import (  # noqa: F401  (COMPONENT_KINDS, MAX_RESULTS: re-exported)
    COMPONENT_KINDS,
    MAX_RESULTS,
    check_result_count,
    validate,
)
from trainables.components import NumbersOnly, describe_error, integers_only, numbers_only
from trainables.data.datasets import DatasetSpec

#: the spec section each selector key is written in
ATTACK_KINDS = ("trigger", "poisoning")
#: seeds (and ``dataset.split_seed``) are what NumPy and scikit-learn accept: 0 … 2³² − 1
Seed = Annotated[int, BeforeValidator(integers_only), Field(ge=0, le=2**32 - 1)]
#: spec fields that change no result, left out of `Spec.digest`
NOT_FINGERPRINTED: dict[str, Any] = {
    "store": True,
    "description": True,
    "execution": {"max_failures", "max_concurrent_trials"},
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class LearnerSection(_Section):
    name: str


class AttackSection(_Section):
    trigger: str = "patch"
    poisoning: str = "dirty_label"
    target: Any


class DefenceSection(_Section):
    name: str = "none"


class CurvesSection(BaseModel):
    """Backdoor learning curves (docs/science.md §5): off, or the β grid to retrain over.

    Enabled without ``betas``, the grid is ``trainables.measures.betas.DEFAULT_BETAS`` (0 and 12
    log-spaced values from 1e-3 to 1), written into the spec so the store records it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = False
    betas: list[Annotated[float, BeforeValidator(numbers_only), Field(ge=0, le=1)]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_betas(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("enabled") and data.get("betas") is None:
            from trainables.measures.betas import DEFAULT_BETAS

            data = {**data, "betas": list(DEFAULT_BETAS)}
        return data


class ExplainSection(NumbersOnly):
    """Explanations per result (`trainables.measures.influence`, `trainables.measures.dynamics`).

    ``influence_k``: each result row gets ``influential_poison_frac``, the share of poisoned rows
    among the ``influence_k`` most influential training samples of a triggered non-target test
    sample (mean over the first ``influence_samples`` of them). ``dynamics`` (networks): per-epoch
    losses of clean, poisoned and untriggered poisoned samples in the ``dynamics`` table.
    Both go into every result's configuration as flat keys (store columns) only when switched on.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    influence_k: Annotated[int, Field(ge=1)] | None = None
    influence_samples: Annotated[int, Field(ge=1)] = 100
    dynamics: bool = False

    def result_keys(self) -> dict[str, Any]:
        """The flat keys the plan adds to each result's configuration (none when all is off)."""
        keys: dict[str, Any] = {}
        if self.influence_k is not None:
            keys.update(influence_k=self.influence_k, influence_samples=self.influence_samples)
        if self.dynamics:
            keys["dynamics"] = True
        return keys


class ExecutionSection(NumbersOnly):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cpus_per_trial: Annotated[float, Field(gt=0, le=256)] = 1
    gpus_per_trial: Annotated[float, Field(ge=0, le=16)] = 0
    #: axes looped inside one Tune trial; "auto" = every attack axis (and always the seeds)
    inner_axes: list[str] | Literal["auto"] = "auto"
    max_failures: Annotated[int, Field(ge=0, le=100)] = 1
    max_concurrent_trials: Annotated[int, Field(ge=1)] | None = None
    #: networks: deterministic algorithms (false: cuDNN autotuning); see sweep/execution.py
    deterministic: bool = True
    precision: Literal["fp32", "bf16"] = "fp32"
    scheduler: SchedulerSection | None = None


class Spec(BaseModel):
    """A whole sweep as written in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=SWEEP_NAME_PATTERN)]
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    learner: LearnerSection
    attack: AttackSection
    defence: DefenceSection = DefenceSection()
    #: axis -> a list of values, or (learner/defence axes, with a search algorithm) a `Range`
    grid: dict[str, list[Any] | Range] = {}
    seeds: list[Seed] = [0]
    curves: CurvesSection = CurvesSection()
    explain: ExplainSection = ExplainSection()
    execution: ExecutionSection = ExecutionSection()
    search: SearchSection = SearchSection()
    store: str = "results"

    @field_validator("grid", mode="before")
    @classmethod
    def _ranges(cls, grid: Any) -> Any:
        """``{loguniform: [low, high]}`` and friends become a `Range` (one line if malformed)."""
        if not isinstance(grid, dict):
            return grid
        return {
            a: parse_range(f"grid.{a}", v) if isinstance(v, dict) else v for a, v in grid.items()
        }

    # -- the flat configuration -------------------------------------------------------------
    def base_config(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Fixed values and where each was written (``learner.C``, ``attack.trigger_size``…)."""
        config: dict[str, Any] = {"learner": self.learner.name}
        origins = {"learner": "learner.name"}
        for key, value in (self.learner.model_extra or {}).items():
            config[key], origins[key] = value, f"learner.{key}"
        attack = {"trigger": self.attack.trigger, "poisoning": self.attack.poisoning}
        attack.update({"target": self.attack.target}, **(self.attack.model_extra or {}))
        for key, value in attack.items():
            config[key], origins[key] = value, f"attack.{key}"
        config["defence"], origins["defence"] = self.defence.name, "defence.name"
        for key, value in (self.defence.model_extra or {}).items():
            config[key], origins[key] = value, f"defence.{key}"
        return config, origins

    def grid_lists(self) -> dict[str, list[Any]]:
        """Every axis as a list: a range by its endpoints (what validation checks)."""
        return {a: v.endpoints() if isinstance(v, Range) else v for a, v in self.grid.items()}

    def cells(self) -> Iterator[dict[str, Any]]:
        """Every grid point as a flat config (without the seed), in a stable order; a range
        contributes its endpoints."""
        base, _ = self.base_config()
        lists = self.grid_lists()
        axes = list(lists)
        for values in itertools.product(*(lists[a] for a in axes)):
            yield {**base, **dict(zip(axes, values, strict=True))}

    @property
    def n_cells(self) -> int:
        """Grid points: configurations × attack settings (configurations sampled when searching)."""
        if not self.search.is_default:
            return n_configurations(self) * n_inner_cells(self)
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    @property
    def n_results(self) -> int:
        """Results the sweep runs (at most, for a slope screen; see `sweep.search`)."""
        if not self.search.is_default:
            return planned_results(self)
        return self.n_cells * len(self.seeds)

    def inner_axes(self) -> list[str]:
        """Grid axes looped inside one trial (the attack axes unless the spec says otherwise)."""
        if self.execution.inner_axes != "auto":
            return list(self.execution.inner_axes)
        attack_keys = {"trigger", "poisoning", "target"}
        for kind in ATTACK_KINDS:
            for cls in COMPONENT_KINDS[kind].values():
                attack_keys |= set(cls.Params.model_fields)
        return [a for a in self.grid if a in attack_keys]

    def smoke(self) -> Spec:
        """The tiny version: the first two values of every axis, the first seed, 3 βs."""
        data = self.model_dump()
        data["grid"] = {k: v[:2] if isinstance(v, list) else v for k, v in self.grid.items()}
        data["seeds"] = self.seeds[:1]
        data["search"] = smoke_search(self, data["grid"])
        if self.curves.betas:
            betas = self.curves.betas
            data["curves"]["betas"] = sorted({betas[0], betas[len(betas) // 2], betas[-1]})
        data["name"] = f"{self.name}-smoke" if not self.name.endswith("-smoke") else self.name
        return Spec.model_validate(data)

    def fingerprinted(self) -> dict[str, Any]:
        """The spec as JSON without the fields that change no result (`NOT_FINGERPRINTED`); a
        default search section is left out too, so sweeps from before searches keep their digest."""
        data = self.model_dump(mode="json", exclude=NOT_FINGERPRINTED)
        if self.search == SearchSection():
            data.pop("search")
        return data

    def digest(self) -> str:
        """A hash of what determines the results: the same for a store moved or spelled otherwise."""
        return stable_hash(self.fingerprinted())


def first_difference(before: Spec, after: Spec) -> str | None:
    """``field: before → after`` for the first fingerprinted field that differs, else None."""
    a, b = _flat(before.fingerprinted()), _flat(after.fingerprinted())
    for key in sorted(set(a) | set(b)):
        if a.get(key, "absent") != b.get(key, "absent"):
            return f"{key}: {shown(a.get(key, 'absent'))} → {shown(b.get(key, 'absent'))}"
    return None


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def stable_hash(obj: Any, n: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:n]


# -- loading ---------------------------------------------------------------------------------
def load_spec(path: str | Path | None = None) -> Spec:
    """Read and fully validate a spec file (the embedded default when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_SPEC
    if not path.is_file():
        why = "a folder" if path.is_dir() else "not found"
        raise SweepError(f"spec file must be an existing YAML file; got {shown(str(path))} ({why})")
    return parse_spec(read_spec_file(path), source=str(path))


def parse_spec(raw: Any, source: str = "spec") -> Spec:
    if not isinstance(raw, dict):
        raise SweepError(
            f"{source} must be a YAML mapping with name, learner, attack, grid…; got {type(raw).__name__}"
        )
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as err:
        raise SweepError(describe_error(err)) from None
    validate(spec)
    return spec


def with_overrides(spec: Spec, *, name: str | None = None, store: str | None = None) -> Spec:
    data = spec.model_dump()
    if name is not None:
        data["name"] = name
    if store is not None:
        data["store"] = store
    return parse_spec(data)
