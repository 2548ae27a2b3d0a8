"""Checking a spec before anything runs: one small check per concern, each raising one line.

Every check raises a `SweepError` naming where the user wrote the field (``grid.C``,
``attack.trigger_size``), the value and what is allowed. The work grows with the values written,
not with the grid: each value of each key is checked once per component that reads it, and a check
that needs several keys or the dataset (a component's ``check_cell``: a trigger larger than the
image, a supplant source equal to the target, DP-SGD on a scikit-learn learner) runs once per
combination of the values of the keys that component names in ``check_keys`` — never once per grid
cell. A grid of 10⁹ results validates as fast as one of ten; its size is refused separately, by
`check_result_count`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from backdoor_sweep.errors import SweepError, shown
from sweep.execution import check_execution
from sweep.search import check_search
from trainables.attacks.poisoning import POISONINGS
from trainables.attacks.triggers import TRIGGERS
from trainables.components import Registry, describe_error
from trainables.data.datasets import DatasetInfo, dataset_info
from trainables.defences import DEFENCES
from trainables.learners import LEARNERS

if TYPE_CHECKING:
    from sweep.spec import Spec

#: flat key naming the component -> its registry
COMPONENT_KINDS: dict[str, Registry] = {
    "learner": LEARNERS,
    "trigger": TRIGGERS,
    "poisoning": POISONINGS,
    "defence": DEFENCES,
}
#: results a sweep may have unless the user passes ``--force`` (`check_result_count`)
MAX_RESULTS = 100_000


def validate(spec: Spec) -> None:
    """Check every name and value of the spec; raise `SweepError` with one line on the first problem."""
    check_axes(spec)
    check_seeds(spec)
    check_inner_axes(spec)
    check_betas(spec)
    origins = where_written(spec)
    chosen = chosen_classes(spec, origins)
    check_known_keys(spec, origins, chosen)
    info = dataset_info(spec.dataset)  # checks dataset.classes; image_folder reads its folder
    check_values(spec, origins, chosen)
    check_all_read(spec, origins, chosen)
    check_targets(spec, origins, info)
    check_cells(spec, origins, info, chosen)
    check_explain(spec, origins, info, chosen)
    check_search(spec, len(info.classes))  # ranges and the search: section (sweep.search)
    check_execution(spec)


def check_result_count(spec: Spec, force: bool = False) -> None:
    """Refuse a sweep of more than `MAX_RESULTS` results unless ``force`` (``run --force``)."""
    if force or spec.n_results <= MAX_RESULTS:
        return
    if spec.search.is_default:
        sizes = [f"{len(v)} {k}" for k, v in spec.grid.items() if len(v) > 1]
    else:
        sizes = [f"at most {spec.n_results // len(spec.seeds):,} configurations × attack settings"]
    sizes.append(f"{len(spec.seeds)} seed{'s' if len(spec.seeds) > 1 else ''}")
    raise SweepError(
        f"grid and seeds must give at most {MAX_RESULTS:,} results (pass --force to run more); "
        f"got {spec.n_results:,} = {' × '.join(sizes)}"
    )


# -- the shape of the spec --------------------------------------------------------------------
def known_keys() -> set[str]:
    """Every flat key a spec may set: the component selectors, ``target`` and all parameters."""
    keys = set(COMPONENT_KINDS) | {"target"}
    for registry in COMPONENT_KINDS.values():
        for cls in registry.values():
            keys |= set(cls.Params.model_fields)
    return keys


def check_axes(spec: Spec) -> None:
    known = known_keys()
    for axis, values in spec.grid.items():
        if axis == "seed":
            raise SweepError("grid axis must not be 'seed'; list seeds under 'seeds'")
        if axis not in known:
            raise SweepError(
                f"grid axis must be one of {', '.join(sorted(known))}; got {shown(axis)}"
            )
        if isinstance(values, list) and not values:  # a range is checked where it is parsed
            raise SweepError(f"grid.{axis} must list at least one value; got []")


def check_seeds(spec: Spec) -> None:
    if not spec.seeds:
        raise SweepError("seeds must list at least one seed; got []")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise SweepError(f"seeds must not repeat; got {shown(spec.seeds)}")


def check_inner_axes(spec: Spec) -> None:
    if spec.execution.inner_axes == "auto":
        return
    for axis in spec.execution.inner_axes:
        if axis not in spec.grid:
            raise SweepError(
                f"execution.inner_axes must name grid axes {sorted(spec.grid)}; got {shown(axis)}"
            )


def check_betas(spec: Spec) -> None:
    betas = spec.curves.betas
    if not spec.curves.enabled or betas is None:
        return
    if not any(b > 0 for b in betas):
        raise SweepError(f"curves.betas must list at least one β in (0, 1]; got {shown(betas)}")
    if len(set(betas)) != len(betas) or betas != sorted(betas):
        raise SweepError(f"curves.betas must be distinct and increasing; got {shown(betas)}")


def where_written(spec: Spec) -> dict[str, str]:
    """Flat key -> where the user wrote it (``learner.C``, ``grid.C``…); the grid wins."""
    _, origins = spec.base_config()
    origins.update({axis: f"grid.{axis}" for axis in spec.grid})
    return origins


#: the spec section a fixed parameter is written in -> the kinds of component it can belong to
SECTION_KINDS = {
    "learner": ("learner",),
    "attack": ("trigger", "poisoning"),
    "defence": ("defence",),
}


def check_known_keys(spec: Spec, origins: dict[str, str], chosen: dict[str, list[type]]) -> None:
    """Every fixed key names a parameter; an unknown one is answered with what its section reads."""
    known = known_keys()
    base, _ = spec.base_config()
    for key in base:
        if key in known:
            continue
        kinds = SECTION_KINDS[origins[key].split(".", 1)[0]]
        reads = "; ".join(
            f"{kind} {cls.name} reads {', '.join(cls.Params.model_fields) or 'nothing'}"
            for kind in kinds
            for cls in chosen[kind]
        )
        raise SweepError(
            f"{origins[key]} is not a known parameter ({reads}); got {shown(base[key])}"
        )


# -- the values -------------------------------------------------------------------------------
def values_of(spec: Spec, key: str) -> list[Any]:
    """The values ``key`` takes in the sweep: its grid axis, or its one fixed value."""
    if key in spec.grid:
        return list(spec.grid_lists()[key])  # a range: its endpoints
    base, _ = spec.base_config()
    return [base[key]]


def chosen_classes(spec: Spec, origins: dict[str, str]) -> dict[str, list[type]]:
    """Per kind, the component classes the sweep uses (every value of a selector axis)."""
    chosen = {}
    for kind, registry in COMPONENT_KINDS.items():
        names = values_of(spec, kind)
        classes = [registry.get_class(name, origins[kind]) for name in names]
        _refuse_repeats(origins[kind], names, names)
        chosen[kind] = classes
    return chosen


def check_values(spec: Spec, origins: dict[str, str], chosen: dict[str, list[type]]) -> None:
    """Each value of each parameter, through every chosen component that reads it.

    A grid axis must not repeat a value once validated (``C: [1, 1.0]`` is one C twice): each
    result would be stored twice under one id.
    """
    base, _ = spec.base_config()
    models = list(dict.fromkeys(cls.Params for classes in chosen.values() for cls in classes))
    for key in [*base, *(a for a in spec.grid if a not in base)]:
        if key in COMPONENT_KINDS or key == "target":
            continue
        values = values_of(spec, key)
        for model in (m for m in models if key in m.model_fields):
            validated = [_validated(model, key, value, origins) for value in values]
            _refuse_repeats(origins[key], values, validated)


def _validated(model: type, key: str, value: Any, origins: dict[str, str]) -> Any:
    try:
        return model.model_validate({key: value}).model_dump(mode="json")[key]
    except ValidationError as err:
        raise SweepError(describe_error(err, origins=origins)) from None


def _refuse_repeats(where: str, written: list[Any], validated: list[Any]) -> None:
    seen: dict[str, int] = {}
    for i, value in enumerate(validated):
        token = json.dumps(value, sort_keys=True, default=str)
        if token in seen:
            first = written[seen[token]]
            same = (
                ""
                if first == written[i] and type(first) is type(written[i])
                else f" (both {shown(value)} once validated)"
            )
            raise SweepError(
                f"{where} must not repeat a value; got {shown(first)} and {shown(written[i])}{same}"
            )
        seen[token] = i


def check_all_read(spec: Spec, origins: dict[str, str], chosen: dict[str, list[type]]) -> None:
    """Every parameter the spec sets is read by a component it chooses (no silent no-op)."""
    base, _ = spec.base_config()
    read = {k for classes in chosen.values() for cls in classes for k in cls.Params.model_fields}
    for key in [*base, *spec.grid]:
        if key in COMPONENT_KINDS or key == "target" or key in read:
            continue
        kind = next(
            (
                k
                for k, reg in COMPONENT_KINDS.items()
                if any(key in c.Params.model_fields for c in reg.values())
            ),
            "learner",
        )
        names = [cls.name for cls in chosen[kind]]
        if len(names) == 1:
            own = ", ".join(chosen[kind][0].Params.model_fields) or "no parameters"
            whom = f"the chosen {kind} {names[0]}, which reads {own}"
        else:
            whom = f"any of the chosen {kind}s {', '.join(names)}"
        value = spec.grid[key] if key in spec.grid else base[key]
        raise SweepError(f"{origins[key]} is not read by {whom}; got {shown(value)}")


def check_targets(spec: Spec, origins: dict[str, str], info: DatasetInfo) -> None:
    for target in values_of(spec, "target"):
        # a class is a name or an index; true (YAML's yes, on) would pass for index 1
        if isinstance(target, bool) or info.position(target) is None:
            raise SweepError(
                f"{origins['target']} must be one of the classes {info.classes}; got {shown(target)}"
            )
    targets = values_of(spec, "target")
    _refuse_repeats(origins["target"], targets, [info.position(t) for t in targets])


# -- checks across keys -----------------------------------------------------------------------
def check_cells(
    spec: Spec, origins: dict[str, str], info: DatasetInfo, chosen: dict[str, list[type]]
) -> None:
    """Each chosen component's ``check_cell``, once per combination of its ``check_keys``' values."""
    for kind, classes in chosen.items():
        if not any(hasattr(cls, "check_cell") for cls in classes):
            continue  # learners are estimators: their values alone are checked
        keys = [kind, *dict.fromkeys(k for cls in classes for k in cls.check_keys if k != kind)]
        for cell in sub_grid(spec, keys):
            COMPONENT_KINDS[kind][cell[kind]].check_cell(cell, origins, info)


def sub_grid(spec: Spec, keys: list[str]) -> Iterator[dict[str, Any]]:
    """Flat cells varying only ``keys`` (every other grid axis at its first value).

    There are as many as the product of the lengths of the grid axes among ``keys``.
    """
    base, _ = spec.base_config()
    lists = spec.grid_lists()  # a range: its endpoints
    first = {**base, **{axis: values[0] for axis, values in lists.items()}}
    axes = [k for k in keys if k in lists]
    for combo in itertools.product(*(lists[a] for a in axes)):
        yield {**first, **dict(zip(axes, combo, strict=True))}


def check_explain(
    spec: Spec, origins: dict[str, str], info: DatasetInfo, chosen: dict[str, list[type]]
) -> None:
    """``explain.dynamics`` needs network learners; influence of scikit-learn learners needs two classes."""
    ex = spec.explain
    for cls in chosen["learner"]:
        kind = getattr(cls, "kind", "")
        if ex.dynamics and kind != "torch":
            nets = ", ".join(
                sorted(n for n, c in LEARNERS.items() if getattr(c, "kind", "") == "torch")
            )
            raise SweepError(
                f"explain.dynamics needs a network learner ({nets}), since only they train by epochs; "
                f"{origins['learner']} is {cls.name!r}"
            )
        if ex.influence_k is not None and kind != "torch" and len(info.classes) != 2:
            raise SweepError(
                f"explain.influence_k needs a binary problem with learner {cls.name!r} "
                f"(networks: any number of classes); got {len(info.classes)} classes"
            )
