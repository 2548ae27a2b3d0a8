"""The store's one schema: its tables, their columns, and what each metric means.

Every reader and writer of the store takes its column lists from here: the store writes each part
file with its table's one Arrow schema (`table_schemas`), ``verify`` checks the parts against it,
``query`` and ``--where`` know the tables, and the analysis reads a metric's direction (is higher
better for the defender?) and whether it is a rate in [0, 1] (its intervals stay inside [0, 1] and
its colour range is fixed) from `METRICS`. The metrics are defined in ``docs/science.md`` (Metrics,
Learning curve, Slope, Parameter deviation, Defences).

A sweep's schema is known before any result arrives: configuration columns take their types from
the values the plan gives them (a grid of ``C: [1, 10]`` is ``double`` after the learner's model
coerced it), metric columns from their declaration below, and a metric is a column when some
result of the plan can produce it (``dp_epsilon`` when some cell uses the ``dp_sgd`` defence, the
slope columns when learning curves are on). Rows that lack a column hold null in it: a σ = 0 part
has a null ``dp_epsilon`` of type ``double``, an RBF-SVM part of a sweep that also runs ridge
has a ``gamma``. Resuming recomputes the same schema from the same spec.

This module is light (no pyarrow or pandas at import): `table_schemas` imports what it needs.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

TABLES = ("trials", "curves", "dynamics")
#: sweep names (folder names in the store): no path separators, not starting with a dot
SWEEP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
SWEEP_NAME = re.compile(SWEEP_NAME_PATTERN)
#: the kinds of value a column holds (their Arrow types in `arrow_type`)
KINDS = ("float", "int", "bool", "string", "timestamp")


@dataclass(frozen=True)
class Column:
    """A stored column: its name and the kind of value it holds."""

    name: str
    kind: str


@dataclass(frozen=True)
class Metric:
    """A measured column of a table.

    ``better``: ``"higher"`` or ``"lower"`` is better for the defender, None for a count, a cost
    or a note. ``rate``: a proportion in [0, 1]. ``clean``: measured on clean data only, so the
    analysis aggregates it over every attack setting, poisoned or not. ``when``: the column exists
    when some result of the plan has this configuration value (``(key, None)``: has the key).
    """

    name: str
    kind: str = "float"
    better: str | None = None
    rate: bool = False
    clean: bool = False
    when: tuple[str, Any] | None = None
    #: the version that added the column: parts written before it lack the column, and readers
    #: and ``verify`` take it as null there (None: in every store this project wrote)
    since: str | None = None


@dataclass(frozen=True)
class Table:
    """A table of the store: key columns first, then (trials) the configuration, the metrics and
    the bookkeeping columns. ``required`` columns must be in every part (readers refuse a part
    without them)."""

    name: str
    keys: tuple[Column, ...]
    metrics: tuple[Metric, ...]
    bookkeeping: tuple[Column, ...] = ()
    required: tuple[str, ...] = ()
    has_config: bool = False


def _ids(*extra: Column) -> tuple[Column, ...]:
    return (
        Column("sweep", "string"),
        Column("trial_id", "string"),
        Column("result_id", "string"),
        *extra,
    )


_CURVES = ("curves", None)
_INFLUENCE = ("influence_k", None)
_DP = ("defence", "dp_sgd")
_FINETUNE = ("defence", "clean_finetune")
_FILTER = ("defence", "filter")
_CLEAN_LABEL = ("poisoning", "clean_label")
_GAN = ("hardening", "gan_interpolation")
#: per-epoch reports under an execution.scheduler (trainables/epochs.py)
_EPOCHS = ("val_fraction", None)

TRIALS = Table(
    "trials",
    keys=_ids(),
    metrics=(
        Metric("clean_acc", better="higher", rate=True, clean=True),
        Metric("backdoor_acc", better="lower", rate=True),
        Metric("asr", better="lower", rate=True),
        Metric("asr_excl_pred", better="lower", rate=True),
        Metric("robust_acc", better="higher", rate=True),
        Metric("n_poison", "int"),
        Metric("n_train", "int"),
        Metric("n_test", "int"),
        Metric("fit_seconds"),
        # learner trainings of the result: its fit, its learning curve's, the slope cross-check's
        Metric("n_fits", "int", since="0.3.0"),
        Metric("effective_poison_rate", rate=True),
        Metric("poison_per_class", "string"),
        Metric("surrogate_loss_clean", when=_CLEAN_LABEL),
        Metric("surrogate_loss_hardened", when=_CLEAN_LABEL),
        # the cached generator of a result, and its reproduction error (docs/gan_interpolation.md)
        Metric("generator_key", "string", when=_GAN),
        Metric("gan_reconstruction_mse", when=_GAN),
        Metric("slope", better="lower", when=_CURVES),
        Metric("slope_fd", better="lower", when=_CURVES),
        Metric("slope_note", "string", when=_CURVES),
        Metric("rho_final", when=_CURVES),
        Metric("nu_final", when=_CURVES),
        Metric("influential_poison_frac", better="lower", rate=True, when=_INFLUENCE),
        Metric("influence_note", "string", when=_INFLUENCE),
        Metric("dp_epsilon", better="lower", when=_DP),
        Metric("asr_before_finetune", better="lower", rate=True, when=_FINETUNE),
        Metric("clean_acc_before_finetune", better="higher", rate=True, clean=True, when=_FINETUNE),
        Metric("epochs_before_finetune", "int", when=_FINETUNE),
        Metric("n_poison_set", "int", when=_FINETUNE),
        Metric("n_clean_set", "int", when=_FINETUNE),
        Metric("finetune_val_acc", better="higher", rate=True, clean=True, when=_FINETUNE),
        Metric("filter_recall", better="higher", rate=True, when=_FILTER),
        Metric("filter_precision", better="higher", rate=True, when=_FILTER),
        Metric("filter_n_flagged", "int", when=_FILTER),
        Metric("n_trusted", "int", when=_FILTER),
        Metric("epoch", "int", when=_EPOCHS),
        Metric("train_loss", better="lower", when=_EPOCHS),
        Metric("val_clean_acc", better="higher", rate=True, clean=True, when=_EPOCHS),
        Metric("val_asr", better="lower", rate=True, when=_EPOCHS),
        Metric("n_val", "int", when=_EPOCHS),
    ),
    bookkeeping=(
        Column("asr_definition", "string"),
        Column("status", "string"),
        Column("error", "string"),
        Column("node_id", "string"),
        Column("started_at", "timestamp"),
        Column("finished_at", "timestamp"),
        *(
            Column(f"{lib}_version", "string")
            for lib in ("python", "numpy", "sklearn", "ray", "pandas", "pyarrow", "torch")
        ),
    ),
    required=("sweep", "trial_id", "result_id", "status"),
    has_config=True,
)
CURVES = Table(
    "curves",
    keys=_ids(Column("beta", "float")),
    metrics=(
        Metric("loss_clean", better="lower"),
        Metric("loss_backdoor", better="higher"),
        Metric("acc_clean", better="higher", rate=True, clean=True),
        Metric("acc_backdoor", better="lower", rate=True),
        Metric("rho"),
        Metric("nu"),
    ),
    required=("sweep", "trial_id", "result_id"),
)
DYNAMICS = Table(
    "dynamics",
    keys=_ids(Column("epoch", "int")),
    metrics=(
        Metric("loss_clean", better="lower"),
        Metric("loss_poison", better="higher"),
        Metric("loss_poison_untriggered"),
    ),
    required=("sweep", "trial_id", "result_id"),
)
SCHEMA = {t.name: t for t in (TRIALS, CURVES, DYNAMICS)}
#: every metric of the trials table by name
METRICS = {m.name: m for m in TRIALS.metrics}
#: columns a later version added (``Metric.since``): parts written before it lack them
LATER_COLUMNS = frozenset(m.name for t in SCHEMA.values() for m in t.metrics if m.since)
#: the replicate column of the trials table: results that differ only in it are seeds of one
#: configuration (a column of the plan, not a configuration value the analysis compares)
REPLICATE = "seed"
#: configuration keys of the plan that are not columns (the learning-curve settings, the id)
NOT_COLUMNS = frozenset({"curves", "result_id"})


def metric(name: str) -> Metric | None:
    """The declared metric of the trials table called ``name`` (None for other columns)."""
    return METRICS.get(name)


def is_rate(name: str) -> bool:
    """True for a proportion in [0, 1] (accuracies and success rates)."""
    m = METRICS.get(name)
    return bool(m and m.rate)


def higher_is_better(name: str) -> bool:
    """True when larger values are better for the defender (accuracies, filter recall)."""
    m = METRICS.get(name)
    return bool(m and m.better == "higher")


def bookkeeping_columns() -> set[str]:
    """Trials columns that describe how a result was computed, not what was configured or measured."""
    return {c.name for c in TRIALS.keys + TRIALS.bookkeeping}


def config_kind(key: str, values: Iterable[Any]) -> str:
    """The kind of a configuration column from the values the plan gives it.

    Numbers of one kind keep it; ints mixed with floats are floats; anything else mixed (a
    ``target`` that is a class name in one cell and an index in another) is text. A key that is
    None everywhere takes the kind its component declares (``finetune_lr: float | None``).
    """
    seen = {_value_kind(v) for v in values if v is not None}
    if len(seen) == 1:
        return seen.pop()
    if seen == {"int", "float"}:
        return "float"
    if seen:
        return "string"
    return _declared_kind(key)


def _value_kind(v: Any) -> str:
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "bool"
    if isinstance(v, int) or type(v).__name__.startswith(("int", "uint")):
        return "int"
    if isinstance(v, float) or type(v).__name__.startswith("float"):
        return "float"
    return "string"


def _declared_kind(key: str) -> str:
    """The kind of a component parameter from its annotation (str when nothing declares it)."""
    from sweep.spec import COMPONENT_KINDS

    for registry in COMPONENT_KINDS.values():
        for cls in registry.values():
            field = cls.Params.model_fields.get(key)
            if field is not None:
                return _annotation_kind(field.annotation)
    return "string"


def _annotation_kind(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Annotated:
        return _annotation_kind(args[0])
    if args and typing.get_origin(annotation) is not typing.Literal:
        return _annotation_kind(args[0])  # Optional[X], X | None
    return {bool: "bool", int: "int", float: "float"}.get(annotation, "string")


def table_columns(table: str, results: list[dict[str, Any]]) -> list[Column]:
    """The columns of ``table`` for a sweep whose plan has these results, in stored order."""
    t = SCHEMA[table]
    cols = list(t.keys)
    if t.has_config:
        values: dict[str, list[Any]] = {}
        for result in results:
            for key, value in result.items():
                if key not in NOT_COLUMNS:
                    values.setdefault(key, []).append(value)
        taken = {c.name for c in t.keys + t.bookkeeping} | {m.name for m in t.metrics}
        cols += [Column(k, config_kind(k, v)) for k, v in values.items() if k not in taken]
    for m in t.metrics:
        if m.when is None or any(_matches(r, m.when) for r in results):
            cols.append(Column(m.name, m.kind))
    return cols + list(t.bookkeeping)


def _matches(result: dict[str, Any], when: tuple[str, Any]) -> bool:
    key, value = when
    return key in result if value is None else result.get(key) == value


def arrow_type(kind: str):
    """The Arrow type a column of ``kind`` is stored as."""
    import pyarrow as pa

    return {
        "float": pa.float64(),
        "int": pa.int64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }[kind]


def table_schemas(results: list[dict[str, Any]]):
    """``{table: pyarrow.Schema}`` of a sweep whose plan has these results (see module doc)."""
    import pyarrow as pa

    return {
        name: pa.schema([(c.name, arrow_type(c.kind)) for c in table_columns(name, results)])
        for name in TABLES
    }


def spec_schemas(spec):
    """`table_schemas` of a validated spec's plan (a search's: every trial it may run)."""
    from sweep.searching import possible_plans

    return table_schemas([r for p in possible_plans(spec) for r in p.results])


def schema_difference(got, want) -> list[str]:
    """How a part's schema differs from its table's, in words (empty when it is the same).

    Types that every Parquet reader reads as one (``string`` and ``large_string``, timestamps in
    any unit of one time zone) count as the same; a column the schema lacks starts with
    ``"column "`` (a repair cannot keep it by rewriting the part). A part without a column added
    in a later version (``Metric.since``) is as its version wrote it, not a difference.
    """
    have = {f.name: f.type for f in got}
    out = [
        f"{f.name} is {have[f.name]} here, {f.type} in the schema"
        for f in want
        if f.name in have and _storage_kind(have[f.name]) != _storage_kind(f.type)
    ]
    if missing := [f.name for f in want if f.name not in have and f.name not in LATER_COLUMNS]:
        out.append(f"no column {_few(missing)}")
    if extra := [n for n in have if n not in want.names]:
        out.append(f"column {_few(extra)} not in the schema")
    return out


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _storage_kind(t) -> str:
    import pyarrow as pa

    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.tz}]"
    return str(t)
