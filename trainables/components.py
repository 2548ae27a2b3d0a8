"""Registries of named components (learners, triggers, poisonings, defences) and their parameters.

A spec names a component (``trigger: patch``) and sets its parameters in one flat namespace shared
with the grid axes (``trigger_size: [1, 2, 3]``). Each component class declares the flat parameter
names it accepts as a pydantic model ``Params`` (types, ranges, defaults); adding a component is
adding one class and one registry line. Validation errors become one-line `SweepError`s that name
the parameter, the value and what is allowed.

Checks that need more than one parameter, or the dataset (a trigger larger than the image, a
source class equal to the target), are a component's ``check_cell``; ``check_keys`` names the flat
keys it reads, so validation runs it once per combination of those keys' values — not once per
grid cell (`sweep.validation`).

Learners are scikit-learn estimators, whose ``__init__`` must take every hyperparameter as a
keyword and only store it. `hyperparameter_init` writes that ``__init__`` from the ``Params``
model, so each hyperparameter is declared once (type, range and default) and an estimator accepts
exactly its own.
"""

from __future__ import annotations

import inspect
import re
import types
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from backdoor_sweep.errors import SweepError, shown

if TYPE_CHECKING:
    from trainables.data.datasets import DatasetInfo


# -- numbers only where a number is meant -----------------------------------------------------
def numbers_only(value: Any, kind: Literal["integer", "number"] = "number") -> Any:
    """``value`` unchanged, unless it is a boolean or text where ``kind`` is meant.

    pydantic's lax mode reads ``true`` (YAML also ``yes``, ``on``) as 1 and ``"3"`` as 3; in a
    spec that is a typo, not a number — and a grid value is stored as written, so a string would
    become a text column. NumPy numbers (read back from the store) pass: they are not ``bool``
    or ``str``. Raises a pydantic error that `describe_error` turns into
    ``<field> must be a number, not …; got <value>``.
    """
    what = "an integer" if kind == "integer" else "a number"
    if isinstance(value, bool):
        raise PydanticCustomError(
            "number_type",
            f"Input should be {what}, not true/false (YAML reads yes/no, on/off and true/false "
            "as booleans)",
        )
    if isinstance(value, str):
        raise PydanticCustomError("number_type", f"Input should be {what}, not text{_hint(value)}")
    return value


def integers_only(value: Any) -> Any:
    """`numbers_only` for an integer (seeds, counts)."""
    return numbers_only(value, "integer")


def _hint(text: str) -> str:
    """How to write a number that YAML read as text: an exponent needs a dot and a sign
    (``1e3`` is text, ``1.0e+3`` a number), a quoted number no quotes."""
    try:
        float(text)
    except ValueError:
        return ""
    m = re.fullmatch(r"\s*([+-]?\d+)(?:\.(\d*))?[eE]([+-]?)(\d+)\s*", text)
    if m:
        written = f"{m[1]}.{m[2] or 0}e{m[3] or '+'}{m[4]}"
        return f" (YAML reads {text.strip()} as text: write {written})"
    return " (write it without quotes)"


def number_kind(annotation: Any) -> Literal["integer", "number"] | None:
    """``"integer"`` or ``"number"`` when every value a field of this type takes (None aside) is
    a number or a list or tuple of numbers; None when it also takes text, booleans or anything
    else (those fields are left to pydantic)."""
    kinds: set[str] = set()
    for member in _members(annotation):
        if member is type(None):
            continue
        if get_origin(member) in (list, tuple):
            inner = {number_kind(a) for a in get_args(member) if a is not Ellipsis}
            if not inner or None in inner:
                return None
            kinds |= inner  # type: ignore[arg-type]
        elif member is int:
            kinds.add("integer")
        elif member is float:
            kinds.add("number")
        else:
            return None
    if not kinds:
        return None
    return "integer" if kinds == {"integer"} else "number"


def _members(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(annotation) for m in _members(a)]
    return [annotation]


class NumbersOnly(BaseModel):
    """A model whose number fields take numbers only (`numbers_only`, elements of a list or
    tuple of numbers too); every other field is validated as pydantic does."""

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        kind = number_kind(field.annotation) if field is not None else None
        if kind is None:
            return value
        if isinstance(value, list | tuple):
            for item in value:
                numbers_only(item, kind)
            return value
        return numbers_only(value, kind)


class Params(NumbersOnly):
    """Base for component parameter models: unknown keys are refused, values are checked
    (numbers are numbers: `NumbersOnly`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(Params):
    pass


def describe_error(err: ValidationError, where: str = "", origins: dict | None = None) -> str:
    """One line from a pydantic error: ``<where><field> must be ...; got <value>``.

    ``origins`` maps a field name to where the user wrote it (e.g. ``C`` -> ``grid.C``). Values
    are quoted through `shown`, so a huge value cannot flood the message.
    """
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    if origins and loc and loc[0] in origins:
        loc[0] = origins[loc[0]]
    field = ".".join(loc) or "value"
    value = shown(first.get("input"))
    msg = first["msg"]
    msg = msg[0].lower() + msg[1:] if msg else msg
    if first["type"] == "extra_forbidden":
        return f"{where}{field} is not a parameter here; got {value}"
    if first["type"] == "literal_error":
        allowed = msg.split("input should be", 1)[-1].strip()
        return f"{where}{field} must be one of {allowed}; got {value}"
    msg = re.sub(
        r"^(input|string|list|value|dictionary|integer|number|tuple) should ", "must ", msg
    )
    return f"{where}{field} {msg}; got {value}"


class Component:
    """A named, parameterised building block. Subclasses set ``name`` and ``Params``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = NoParams
    #: the flat keys ``check_cell`` reads (its own parameters or others'); none: no cell check
    check_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Params) -> None:
        self.params = params

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Component:
        return cls(parse_params(cls, config))

    @classmethod
    def check_cell(cls, cell: dict, origins: dict, info: DatasetInfo) -> None:
        """Refuse a grid point this component cannot run, before anything runs.

        ``cell`` is a flat configuration, ``origins`` maps a key to where the user wrote it and
        ``info`` describes the dataset. Only the keys in ``check_keys`` vary between calls.
        """


def with_origin(message: str, origins: dict) -> str:
    """``message`` with its first word, a flat key, replaced by where the user wrote it."""
    field = message.split(" ", 1)[0]
    return origins[field] + message[len(field) :] if field in origins else message


def parse_params(cls: type, config: dict[str, Any], origins: dict | None = None) -> Params:
    """Validate the subset of a flat config that component class ``cls`` reads."""
    own = {k: v for k, v in config.items() if k in cls.Params.model_fields}
    try:
        return cls.Params(**own)
    except ValidationError as err:
        raise SweepError(describe_error(err, origins=origins)) from None


def hyperparameter_init(params: type[Params], **extra: Any):
    """A scikit-learn ``__init__`` whose keyword arguments are the fields of ``params``.

    Each field's default is the model's; ``extra`` adds constructor arguments that are not spec
    parameters (``random_state``, or what a defence sets with ``set_params``), with their
    defaults. The function only stores its arguments, as scikit-learn requires; its signature
    is what ``get_params`` and ``clone`` read. Values are not checked here: the spec's
    ``Params`` validation does that before anything runs.
    """
    defaults: dict[str, Any] = {}
    for name, field in params.model_fields.items():
        if field.is_required():
            raise TypeError(f"{params.__name__}.{name} needs a default to be a hyperparameter")
        defaults[name] = field.get_default(call_default_factory=True)
    clash = sorted(set(extra) & set(defaults))
    if clash:
        raise TypeError(f"{params.__name__} already declares {', '.join(clash)}")
    defaults.update(extra)
    kw = inspect.Parameter.KEYWORD_ONLY
    signature = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)]
        + [inspect.Parameter(name, kw, default=value) for name, value in defaults.items()]
    )

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(defaults))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected hyperparameter {unknown[0]!r}; "
                f"it accepts {', '.join(defaults)}"
            )
        for name, default in defaults.items():
            setattr(self, name, kwargs.get(name, default))

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__doc__ = f"Store the hyperparameters ({', '.join(defaults)})."
    return __init__


class Hyperparameters:
    """Mixin for estimators: each subclass that sets ``Params`` (or ``init_extras``) gets the
    ``__init__`` `hyperparameter_init` writes from them, so it cannot drift from the model."""

    Params: ClassVar[type[Params]]
    #: constructor arguments that are not spec parameters, with their defaults
    init_extras: ClassVar[dict[str, Any]] = {"random_state": None}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" in vars(cls) or "init_extras" in vars(cls):
            cls.__init__ = hyperparameter_init(cls.Params, **cls.init_extras)  # type: ignore[method-assign]


class Registry(dict):
    """name -> what declares a component (anything with ``name`` and ``Params``: a component
    class, or a learner's declaration), with a one-line error for unknown names."""

    def __init__(self, kind: str, *classes: type) -> None:
        super().__init__((c.name, c) for c in classes)
        self.kind = kind

    def get_class(self, name: object, field: str | None = None) -> Any:
        if not isinstance(name, str) or name not in self:
            allowed = ", ".join(sorted(self))
            raise SweepError(f"{field or self.kind} must be one of {allowed}; got {shown(name)}")
        return self[name]
