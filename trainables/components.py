"""Registries of named components (learners, triggers, poisonings, defences) and their parameters.

A spec names a component (``trigger: patch``) and sets its parameters in one flat namespace shared
with the grid axes (``trigger_size: [1, 2, 3]``). Each component class declares the flat parameter
names it accepts as a pydantic model ``Params`` (types, ranges, defaults); adding a component is
adding one class and one registry line. Validation errors become one-line `SweepError`s that name
the parameter, the value and what is allowed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from backdoor_sweep.errors import SweepError


class Params(BaseModel):
    """Base for component parameter models: unknown keys are refused, values are checked."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    pass


def describe_error(err: ValidationError, where: str = "", origins: dict | None = None) -> str:
    """One line from a pydantic error: ``<where><field> must be ...; got <value>``.

    ``origins`` maps a field name to where the user wrote it (e.g. ``C`` -> ``grid.C``).
    """
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    if origins and loc and loc[0] in origins:
        loc[0] = origins[loc[0]]
    field = ".".join(loc) or "value"
    value = first.get("input")
    msg = first["msg"]
    msg = msg[0].lower() + msg[1:] if msg else msg
    if first["type"] == "extra_forbidden":
        return f"{where}{field} is not a parameter here; got {value!r}"
    if first["type"] == "literal_error":
        allowed = msg.split("input should be", 1)[-1].strip()
        return f"{where}{field} must be one of {allowed}; got {value!r}"
    msg = msg.replace("input should be ", "must be ")
    return f"{where}{field} {msg}; got {value!r}"


class Component:
    """A named, parameterised building block. Subclasses set ``name`` and ``Params``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = NoParams

    def __init__(self, params: Params) -> None:
        self.params = params

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Component:
        return cls(parse_params(cls, config))


def parse_params(cls: type, config: dict[str, Any], origins: dict | None = None) -> Params:
    """Validate the subset of a flat config that component class ``cls`` reads."""
    own = {k: v for k, v in config.items() if k in cls.Params.model_fields}
    try:
        return cls.Params(**own)
    except ValidationError as err:
        raise SweepError(describe_error(err, origins=origins)) from None


class Registry(dict):
    """name -> component class, with a one-line error for unknown names."""

    def __init__(self, kind: str, *classes: type) -> None:
        super().__init__((c.name, c) for c in classes)
        self.kind = kind

    def get_class(self, name: object, field: str | None = None) -> type:
        if name not in self:
            allowed = ", ".join(sorted(self))
            raise SweepError(f"{field or self.kind} must be one of {allowed}; got {name!r}")
        return self[name]
