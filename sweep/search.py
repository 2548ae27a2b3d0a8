"""The ``search:`` section of a spec: how the learner's configurations are explored.

A *configuration* is one value of the learner's (and defence's) axes — what the defender chooses.
The attack axes and the seeds stay a grid looped inside every configuration's trial, so each
configuration is scored against every attack exactly as a grid cell is (docs/science.md, Robust
choice). The section picks where the configurations come from:

- ``algorithm: grid`` (the default): every cell of the grid lists, as ever;
- ``algorithm: random``: ``num_samples`` configurations drawn once, up front, from Ray Tune's
  sampling domains seeded by ``seed`` — ranges (``{loguniform: [low, high]}``, ``uniform``,
  ``randint``) and lists (a uniform choice). The draw is a fixed plan, so resuming and verifying a
  random search is resuming and verifying a grid;
- ``algorithm: optuna``: Ray Tune's ``OptunaSearch`` over the same space, told each trial's
  ``objectives`` (aggregated over its results as the robust choice aggregates them): TPE for one
  objective, NSGA-II for several. Adaptive, so its state is kept in the sweep folder and restored
  by ``resume`` (`sweep.searcher`);
- ``strategy: slope_screen``: fit every configuration once per seed at one probe attack, keep the
  accurate ones with the lowest backdoor learning slope, and run the attack grid on those only
  (`sweep.screening`).

Everything is checked before anything runs; each problem is one `SweepError` line naming the
field, the value and what is allowed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from backdoor_sweep.errors import SweepError
from trainables.components import NumbersOnly

if TYPE_CHECKING:
    from sweep.spec import Spec

RANGE_KINDS = ("loguniform", "uniform", "randint")
#: the column and values that mark the two stages of a slope screen
STAGE_COLUMN = "stage"
SCREEN_STAGE = "screen"
FULL_STAGE = "full"
#: the column naming the sampler of a sampled configuration
SAMPLER_COLUMN = "sampler"
#: result metrics an objective may name (``worst_<m>`` for the attacked ones); curve and
#: influence metrics only when the spec computes them
RESULT_METRICS = ("clean_acc", "backdoor_acc", "asr", "asr_excl_pred", "robust_acc")
CURVE_METRICS = ("slope", "slope_fd")
#: metrics that grow with the backdoor, so that a worst case (the largest) makes sense
WORST_OF = ("asr", "asr_excl_pred", "backdoor_acc", "slope", "slope_fd", "influential_poison_frac")
#: slope screening keeps this many configurations when the spec sets neither keep nor keep_fraction
DEFAULT_KEEP = 3


class Range(BaseModel):
    """A range of one learner hyperparameter, written ``{kind: [low, high]}``.

    ``loguniform`` and ``uniform`` draw floats in [low, high]; ``randint`` draws integers
    low ≤ k < high, as Ray Tune's ``randint`` does.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["loguniform", "uniform", "randint"]
    low: float | int
    high: float | int

    @model_serializer
    def _as_written(self) -> dict[str, list]:
        return {self.kind: [self.low, self.high]}

    def endpoints(self) -> list:
        """The smallest and largest value it can draw (what validation checks)."""
        if self.kind == "randint":
            return sorted({self.low, self.high - 1})  # one value when high = low + 1
        return [self.low, self.high]

    @property
    def n_values(self) -> float:
        """How many distinct values it can draw (infinite for float ranges)."""
        return float(self.high - self.low) if self.kind == "randint" else math.inf

    def domain(self):
        """The Ray Tune sampling domain (which `OptunaSearch` converts to an Optuna distribution)."""
        from ray import tune

        return getattr(tune, self.kind)(self.low, self.high)

    def describe(self) -> str:
        return f"{{{self.kind}: [{self.low:g}, {self.high:g}]}}"


def parse_range(field: str, value: Any) -> Range:
    """``{kind: [low, high]}`` from a spec, or one `SweepError` line naming ``field``."""
    if isinstance(value, Range):
        return value
    written = {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else {}
    allowed = f"a list of values or a range {{{' | '.join(RANGE_KINDS)}: [low, high]}}"
    if len(written) != 1 or next(iter(written)) not in RANGE_KINDS:
        raise SweepError(f"{field} must be {allowed}; got {value!r}")
    kind, bounds = next(iter(written.items()))
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise SweepError(f"{field}.{kind} must be two numbers [low, high]; got {bounds!r}")
    try:
        low, high = (_number(b) for b in bounds)
    except (TypeError, ValueError):
        raise SweepError(
            f"{field}.{kind} must be two numbers [low, high]; got {bounds!r}"
        ) from None
    if not all(math.isfinite(b) for b in (low, high)):
        raise SweepError(f"{field}.{kind} must be two finite numbers; got {bounds!r}")
    if kind == "randint" and not all(float(b).is_integer() for b in (low, high)):
        raise SweepError(f"{field}.randint must be two integers [low, high); got {bounds!r}")
    if low >= high:
        raise SweepError(f"{field}.{kind} must have low < high; got [{low:g}, {high:g}]")
    if kind == "loguniform" and low <= 0:
        raise SweepError(
            f"{field}.loguniform must have 0 < low < high (a log range cannot include 0 or a "
            f"negative number); got [{low:g}, {high:g}]"
        )
    if kind == "randint":
        low, high = int(low), int(high)
    return Range(kind=kind, low=low, high=high)


def _number(v: Any) -> float:
    if isinstance(v, bool):
        raise TypeError("a boolean is not a bound")
    return float(v)  # YAML reads 1e-3 (no dot) as a string; float() takes it


class Objective(BaseModel):
    """One metric the searcher optimises, with its direction."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    metric: str
    mode: Literal["min", "max"]


class SearchSection(NumbersOnly):
    """How the learner's configurations are explored; see the module docstring."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    strategy: Literal["full", "slope_screen"] = "full"
    num_samples: Annotated[int, Field(ge=1)] | None = None
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    seed: int = 0
    objectives: list[Objective] = []
    #: slope screening: the attack setting of stage one (default: the strongest of the grid)
    probe: dict[str, Any] | None = None
    keep: Annotated[int, Field(ge=1)] | None = None
    keep_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    clean_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.01

    @property
    def sampler(self) -> str | None:
        """The name stored in the ``sampler`` column of sampled configurations (None for a grid)."""
        if self.algorithm == "random":
            return "random"
        if self.algorithm == "optuna":
            return "optuna_tpe" if len(self.objectives) == 1 else "optuna_nsga2"
        return None

    @property
    def staged(self) -> bool:
        """True when the sweep is not one fixed plan (Optuna, or a slope screen's two stages)."""
        return self.algorithm == "optuna" or self.strategy == "slope_screen"

    @property
    def is_default(self) -> bool:
        return self.algorithm == "grid" and self.strategy == "full"


# -- validation ------------------------------------------------------------------------------
def attack_keys() -> set[str]:
    """Names the attacker controls: trigger and poisoning names, their parameters, the target."""
    from sweep.spec import ATTACK_KINDS, COMPONENT_KINDS

    keys = {"trigger", "poisoning", "target"}
    for kind in ATTACK_KINDS:
        for cls in COMPONENT_KINDS[kind].values():
            keys |= set(cls.Params.model_fields)
    return keys


def allowed_objectives(spec: Spec) -> list[str]:
    """Metrics an objective may name for this spec: result metrics and their worst cases."""
    metrics = list(RESULT_METRICS)
    if spec.curves.enabled or spec.search.strategy == "slope_screen":
        metrics += CURVE_METRICS
    if spec.explain.influence_k is not None:
        metrics.append("influential_poison_frac")
    return metrics + [f"worst_{m}" for m in WORST_OF if m in metrics]


def check_search(spec: Spec, n_classes: int) -> None:
    """Check the ``search`` section and the ranges of the grid against each other."""
    search = spec.search
    attack = attack_keys()
    selectors = {"learner", "trigger", "poisoning", "defence", "target"}
    ranges = {a: v for a, v in spec.grid.items() if isinstance(v, Range)}
    for axis, rng in ranges.items():
        if axis in attack:
            raise SweepError(
                f"grid.{axis} must be a list of values: attack axes stay grids, so every "
                f"configuration meets every attack; got {rng.describe()}"
            )
        if axis in selectors:
            raise SweepError(f"grid.{axis} must be a list of names; got {rng.describe()}")
        if search.algorithm == "grid":
            raise SweepError(
                f"grid.{axis} is a range {rng.describe()}, which needs search.algorithm random "
                "or optuna; got grid"
            )
    if not search.is_default and spec.execution.inner_axes != "auto":
        raise SweepError(
            "execution.inner_axes must be auto when searching (a trial is one configuration "
            f"against every attack setting and seed); got {spec.execution.inner_axes}"
        )
    sched = spec.execution.scheduler
    if sched is not None and not search.is_default:
        # under a scheduler every result is its own trial, and a sampler would draw the attack
        # setting and seed with the configuration: each configuration would meet one attack
        field, got = (
            ("algorithm", search.algorithm)
            if search.algorithm != "grid"
            else ("strategy", search.strategy)
        )
        allowed = "grid" if field == "algorithm" else "full"
        raise SweepError(
            f"search.{field} must be {allowed} with execution.scheduler {sched.name} (a search's "
            "trial is one configuration against every attack setting and seed, a scheduler's "
            f"trial one result); got {got}"
        )
    _check_samples(spec)
    _check_objectives(spec)
    limits = (search.max_concurrent, spec.execution.max_concurrent_trials)
    if None not in limits and limits[0] != limits[1]:
        raise SweepError(
            f"search.max_concurrent must equal execution.max_concurrent_trials when both are set; "
            f"got {limits[0]} and {limits[1]}"
        )
    if search.strategy == "slope_screen":
        _check_screen(spec, n_classes)
    else:
        default = SearchSection()
        for name in ("probe", "keep", "keep_fraction", "clean_tolerance"):
            if getattr(search, name) != getattr(default, name):
                raise SweepError(
                    f"search.{name} is read by strategy slope_screen only; got "
                    f"{getattr(search, name)!r} with strategy {search.strategy}"
                )


def _check_samples(spec: Spec) -> None:
    search = spec.search
    if search.algorithm == "grid":
        if search.num_samples is not None:
            raise SweepError(
                f"search.num_samples is read by algorithm random or optuna; got "
                f"{search.num_samples} with algorithm grid"
            )
        return
    if search.num_samples is None:
        raise SweepError(
            f"search.num_samples must be set (at least 1) for algorithm {search.algorithm}; got none"
        )
    distinct = distinct_configurations(spec)
    if search.num_samples > distinct:
        raise SweepError(
            f"search.num_samples must be at most {distinct:g}, the number of distinct "
            f"configurations of the learner axes; got {search.num_samples}"
        )


def _check_objectives(spec: Spec) -> None:
    search = spec.search
    if search.algorithm == "optuna" and not search.objectives:
        raise SweepError(
            "search.objectives must name at least one metric for algorithm optuna, e.g. "
            "[{metric: clean_acc, mode: max}, {metric: worst_asr, mode: min}]; got []"
        )
    allowed = allowed_objectives(spec)
    seen: set[str] = set()
    for i, objective in enumerate(search.objectives):
        if objective.metric not in allowed:
            raise SweepError(
                f"search.objectives[{i}].metric must be one of {', '.join(allowed)}; "
                f"got {objective.metric!r}"
            )
        if objective.metric in seen:
            raise SweepError(
                f"search.objectives must name each metric once; got {objective.metric!r} twice"
            )
        seen.add(objective.metric)


def _check_screen(spec: Spec, n_classes: int) -> None:
    from trainables.learners import LEARNERS

    search = spec.search
    if search.algorithm == "optuna":
        raise SweepError(
            "search.strategy slope_screen needs algorithm grid or random (its configurations "
            "are known before stage one); got optuna"
        )
    if search.keep is not None and search.keep_fraction is not None:
        raise SweepError(
            f"search.keep and search.keep_fraction must not both be set; got {search.keep} "
            f"and {search.keep_fraction}"
        )
    base, _ = spec.base_config()
    learners = spec.grid.get("learner", [base["learner"]])
    with_slope = sorted(n for n, c in LEARNERS.items() if getattr(c, "kind", "") == "sklearn")
    for name in learners:
        if getattr(LEARNERS[name], "kind", "") != "sklearn":
            raise SweepError(
                f"search.strategy slope_screen needs a learner with a backdoor learning slope "
                f"({', '.join(with_slope)}); got learner {name!r}"
            )
    if n_classes != 2:
        raise SweepError(
            f"search.strategy slope_screen needs a binary problem (the slope is defined for two "
            f"classes); got {n_classes} classes"
        )
    probe = probe_setting(spec)
    rate = probe.get("poison_rate", base.get("poison_rate"))
    if rate is not None and float(rate) <= 0:
        raise SweepError(
            f"search.probe must be an attacked setting (poison_rate > 0); got poison_rate {rate}"
        )


def distinct_configurations(spec: Spec) -> float:
    """How many distinct configurations the learner axes can take (infinite with a float range)."""
    from sweep.plan import outer_axes

    n = 1.0
    for axis in outer_axes(spec):
        values = spec.grid[axis]
        n *= values.n_values if isinstance(values, Range) else len({repr(v) for v in values})
    return n


# -- slope screening: the probe and how many configurations stage two keeps ------------------
def probe_setting(spec: Spec) -> dict[str, Any]:
    """The attack setting of stage one: the spec's ``search.probe``, the strongest otherwise.

    Each attack axis the probe does not name takes its largest value when its values are numbers
    (a larger poison rate, trigger, blend or perturbation is a stronger attack) and its first
    value otherwise. Raises `SweepError` for a probe naming a value or axis the grid lacks.
    """
    axes = spec.inner_axes()
    given = dict(spec.search.probe or {})
    for key, value in given.items():
        if key not in axes:
            allowed = ", ".join(axes) or "none (the grid has no attack axis)"
            raise SweepError(f"search.probe.{key} must be an attack axis of the grid ({allowed})")
        if not any(_same(value, v) for v in spec.grid[key]):
            raise SweepError(
                f"search.probe.{key} must be one of the grid's values {spec.grid[key]}; got {value!r}"
            )
    probe = {}
    for axis in axes:
        values = spec.grid[axis]
        if axis in given:
            probe[axis] = next(v for v in values if _same(given[axis], v))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            probe[axis] = max(values)
        else:
            probe[axis] = values[0]
    return probe


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # true is no 1 (YAML's yes, on)
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return str(a) == str(b)


def n_keep(search: SearchSection, n_eligible: int) -> int:
    """How many eligible configurations stage two runs: ``keep``, or ``keep_fraction`` of them."""
    if search.keep_fraction is not None:
        return min(n_eligible, max(1, math.ceil(search.keep_fraction * n_eligible)))
    return min(n_eligible, search.keep if search.keep is not None else DEFAULT_KEEP)


# -- sizes -----------------------------------------------------------------------------------
def n_configurations(spec: Spec) -> int:
    """Configurations the search looks at: the grid's cells of the learner axes, or num_samples."""
    from sweep.plan import outer_axes

    if spec.search.algorithm != "grid":
        return int(spec.search.num_samples or 0)
    return math.prod(len(spec.grid[a]) for a in outer_axes(spec))


def n_inner_cells(spec: Spec) -> int:
    """Attack settings of one configuration (the product of the attack axes' lists)."""
    return math.prod(len(spec.grid[a]) for a in spec.inner_axes())


def planned_results(spec: Spec) -> int:
    """Results the sweep runs at most: every configuration's trial, or both screening stages."""
    n_seeds = len(spec.seeds)
    configs = n_configurations(spec)
    if spec.search.strategy == "slope_screen":
        kept = n_keep(spec.search, configs)
        return configs * n_seeds + kept * n_inner_cells(spec) * n_seeds
    return configs * n_inner_cells(spec) * n_seeds


def smoke_search(spec: Spec, grid: dict[str, Any]) -> dict[str, Any]:
    """The search section of ``spec.smoke()``: two samples, a probe inside the smoke grid."""
    data = spec.search.model_dump()
    if spec.search.num_samples is not None:
        data["num_samples"] = min(spec.search.num_samples, 2)
    probe = data.get("probe")
    if probe and any(
        not isinstance(grid.get(k), list) or not any(_same(v, g) for g in grid[k])
        for k, v in probe.items()
    ):
        data.pop("probe")  # the smoke grid lost the probe's value: probe its strongest instead
    return data
