"""Sweep specs: YAML in, a validated grid of flat configurations out.

A spec names a dataset, a learner, an attack (trigger, poisoning, target), grid axes and seeds. All
component parameters live in one flat namespace (``C``, ``gamma``, ``trigger_size``,
``poison_rate``…), which is also the store's column names; a grid axis is any such name (or
``learner``, ``trigger``, ``poisoning``, ``target`` themselves). Everything is checked before
anything runs: unknown names, out-of-range values, a trigger larger than the image, a target that
is not a class — each gives one `SweepError` line naming the field, the value and what is allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from backdoor_sweep.errors import SweepError
from search_spaces import DEFAULT_SPEC, PRESETS_DIR  # noqa: F401  (re-exported)
from sweep.execution import SchedulerSection, check_execution
from trainables.attacks.poisoning import POISONINGS
from trainables.attacks.triggers import TRIGGERS
from trainables.components import Registry, describe_error, parse_params
from trainables.data.datasets import DatasetSpec, dataset_info
from trainables.defences import DEFENCES
from trainables.learners import LEARNERS

#: flat key naming the component -> its registry
COMPONENT_KINDS: dict[str, Registry] = {
    "learner": LEARNERS,
    "trigger": TRIGGERS,
    "poisoning": POISONINGS,
    "defence": DEFENCES,
}
#: the spec section each selector key is written in
ATTACK_KINDS = ("trigger", "poisoning")


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
    """Backdoor learning curves (SCIENCE.md §5): off, or the β grid to retrain over.

    Enabled without ``betas``, the grid is ``trainables.measures.curves.DEFAULT_BETAS`` (0 and 12
    log-spaced values from 1e-3 to 1), written into the spec so the store records it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = False
    betas: list[Annotated[float, Field(ge=0, le=1)]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_betas(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("enabled") and data.get("betas") is None:
            from trainables.measures.curves import DEFAULT_BETAS

            data = {**data, "betas": list(DEFAULT_BETAS)}
        return data


class ExplainSection(BaseModel):
    """Explanations per result (issue 8; `trainables.measures.influence`, `trainables.measures.dynamics`).

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


class ExecutionSection(BaseModel):
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

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    description: str = ""
    dataset: DatasetSpec = DatasetSpec()
    learner: LearnerSection
    attack: AttackSection
    defence: DefenceSection = DefenceSection()
    grid: dict[str, list[Any]] = {}
    seeds: list[int] = [0]
    curves: CurvesSection = CurvesSection()
    explain: ExplainSection = ExplainSection()
    execution: ExecutionSection = ExecutionSection()
    store: str = "results"

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

    def cells(self) -> Iterator[dict[str, Any]]:
        """Every grid point as a flat config (without the seed), in a stable order."""
        base, _ = self.base_config()
        axes = list(self.grid)
        for values in itertools.product(*(self.grid[a] for a in axes)):
            yield {**base, **dict(zip(axes, values, strict=True))}

    @property
    def n_cells(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    @property
    def n_results(self) -> int:
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
        data["grid"] = {k: v[:2] for k, v in self.grid.items()}
        data["seeds"] = self.seeds[:1]
        if self.curves.betas:
            betas = self.curves.betas
            data["curves"]["betas"] = sorted({betas[0], betas[len(betas) // 2], betas[-1]})
        data["name"] = f"{self.name}-smoke" if not self.name.endswith("-smoke") else self.name
        return Spec.model_validate(data)

    def digest(self) -> str:
        return stable_hash(self.model_dump(mode="json"))


def stable_hash(obj: Any, n: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:n]


# -- loading ---------------------------------------------------------------------------------
def load_spec(path: str | Path | None = None) -> Spec:
    """Read and fully validate a spec file (the embedded default when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_SPEC
    if not path.is_file():
        raise SweepError(f"spec file must be an existing YAML file; got {str(path)!r} (not found)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SweepError(f"spec file {path} is not valid YAML{where}: {problem}") from None
    return parse_spec(raw, source=str(path))


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


# -- validation ------------------------------------------------------------------------------
def _known_keys() -> set[str]:
    keys = set(COMPONENT_KINDS) | {"target"}
    for registry in COMPONENT_KINDS.values():
        for cls in registry.values():
            keys |= set(cls.Params.model_fields)
    return keys


def validate(spec: Spec) -> None:
    """Check every name and value of the spec; raise `SweepError` with one line on the first problem."""
    known = _known_keys()
    for axis, values in spec.grid.items():
        if axis not in known:
            raise SweepError(f"grid axis must be one of {', '.join(sorted(known))}; got {axis!r}")
        if axis == "seed":
            raise SweepError("grid axis must not be 'seed'; list seeds under 'seeds'")
        if not values:
            raise SweepError(f"grid.{axis} must list at least one value; got []")
    if not spec.seeds:
        raise SweepError("seeds must list at least one seed; got []")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise SweepError(f"seeds must not repeat; got {spec.seeds}")
    if spec.execution.inner_axes != "auto":
        for axis in spec.execution.inner_axes:
            if axis not in spec.grid:
                raise SweepError(
                    f"execution.inner_axes must name grid axes {sorted(spec.grid)}; got {axis!r}"
                )
    if spec.curves.enabled and spec.curves.betas is not None:
        betas = spec.curves.betas
        if not any(b > 0 for b in betas):
            raise SweepError(f"curves.betas must list at least one β in (0, 1]; got {betas}")
        if len(set(betas)) != len(betas) or betas != sorted(betas):
            raise SweepError(f"curves.betas must be distinct and increasing; got {betas}")

    base, origins = spec.base_config()
    for axis in spec.grid:
        origins[axis] = f"grid.{axis}"
    for key in base:
        if key not in known:
            raise SweepError(
                f"{origins[key]} is not a known parameter; allowed: {', '.join(sorted(known))}"
            )

    info = dataset_info(spec.dataset)  # checks dataset.classes; image_folder reads its folder
    classes, image_shape = info.classes, info.image_shape
    used: set[str] = set()
    seen: set[str] = set()
    for cell in spec.cells():
        for kind, registry in COMPONENT_KINDS.items():
            cls = registry.get_class(cell[kind], origins[kind])
            own = {k: cell[k] for k in cls.Params.model_fields if k in cell}
            used |= set(own) | {kind}
            memo = stable_hash([kind, cell[kind], own])
            if memo in seen:
                continue
            seen.add(memo)
            params = parse_params(cls, cell, origins)
            if kind == "trigger":
                try:
                    cls(params).check(image_shape)
                except SweepError as err:
                    raise SweepError(_with_origin(str(err), origins)) from None
        DEFENCES[cell["defence"]].check_cell(cell, origins)  # e.g. dp_sgd needs a network learner
        if info.position(cell["target"]) is None:
            raise SweepError(
                f"{origins['target']} must be one of the classes {classes}; got {cell['target']!r}"
            )
        if (
            "source" in POISONINGS[cell["poisoning"]].Params.model_fields
            and str(cell.get("source", "all")) != "all"
        ):
            where, src = origins.get("source", "source"), str(cell["source"])
            if info.position(src) is None:
                raise SweepError(
                    f"{where} must be 'all' or one of the classes {classes}; got {src!r}"
                )
            if info.position(src) == info.position(cell["target"]):
                raise SweepError(
                    f"{where} must differ from the target class {cell['target']!r}; got {src!r}"
                )
    _check_explain(spec, info, origins)
    check_execution(spec)
    used.add("target")
    for key in list(base) + list(spec.grid):
        if key not in used:
            raise SweepError(
                f"{origins[key]} is not read by the chosen learner/trigger/poisoning; got {key!r}"
            )


def _with_origin(message: str, origins: dict[str, str]) -> str:
    field = message.split(" ", 1)[0]
    return origins[field] + message[len(field) :] if field in origins else message


def _check_explain(spec: Spec, info, origins: dict[str, str]) -> None:
    """``explain.dynamics`` needs network learners; influence of scikit-learn learners needs two classes."""
    ex = spec.explain
    if not ex.dynamics and ex.influence_k is None:
        return
    for cell in spec.cells():
        kind = getattr(LEARNERS[cell["learner"]], "kind", "")
        if ex.dynamics and kind != "torch":
            nets = ", ".join(
                sorted(n for n, c in LEARNERS.items() if getattr(c, "kind", "") == "torch")
            )
            raise SweepError(
                f"explain.dynamics needs a network learner ({nets}), since only they train by epochs; "
                f"{origins['learner']} is {cell['learner']!r}"
            )
        if ex.influence_k is not None and kind != "torch" and len(info.classes) != 2:
            raise SweepError(
                f"explain.influence_k needs a binary problem with learner {cell['learner']!r} "
                f"(networks: any number of classes); got {len(info.classes)} classes"
            )
