"""What a metric means to the defender, and the colour that says it, in every figure.

The store schema (`sweep.schema`) declares whether larger values of a metric are better or worse for the defender
(``direction``), whether it is a rate with the fixed range [0, 1] (``value_range``), and the colour
scale that follows from both (``colour_scale``). In every figure the same colour means the same
thing: yellow is good for the defender, dark blue is bad (viridis, reversed where lower is better);
metrics with no direction (counts, seconds) use cividis, which carries no such meaning. Cells that a
figure leaves out of the choice (outside the clean-accuracy tolerance) are grey, a colour no scale
uses.
"""

from __future__ import annotations

from sweep.schema import METRICS

#: larger is better for the defender (so "worst" is the minimum) — read from the store schema
HIGHER_IS_BETTER = frozenset(m.name for m in METRICS.values() if m.better == "higher")
#: smaller is better for the defender
LOWER_IS_BETTER = frozenset(m.name for m in METRICS.values() if m.better == "lower")
#: rates and accuracies: drawn on the fixed range [0, 1] so two maps compare by colour
RATES = frozenset(m.name for m in METRICS.values() if m.rate)
#: the grey of cells outside the clean-accuracy tolerance
EXCLUDED_GREY = "#c8c8c8"
#: the outline of the chosen (recommended) cell or point
CHOSEN_COLOUR = "#e4572e"


def base_metric(name: str) -> str:
    """``worst_asr`` -> ``asr``: a derived objective has the direction of its metric."""
    return name[len("worst_") :] if name.startswith("worst_") else name


def direction(metric: str) -> int:
    """+1 where larger is better for the defender, -1 where smaller is, 0 where neither."""
    m = base_metric(metric)
    return 1 if m in HIGHER_IS_BETTER else -1 if m in LOWER_IS_BETTER else 0


def value_range(metric: str) -> tuple[float, float] | None:
    """[0, 1] for rates and accuracies; None (the data's range) for anything else."""
    return (0.0, 1.0) if base_metric(metric) in RATES else None


def colour_scale(metric: str) -> tuple[str, bool]:
    """(plotly colour scale, reversed?) so that yellow is good for the defender."""
    d = direction(metric)
    return ("Viridis", d < 0) if d else ("Cividis", False)


def better_word(metric: str) -> str:
    """A short legend: which end of the scale is better ("↓ better", "↑ better", "")."""
    d = direction(metric)
    return "↑ better" if d > 0 else "↓ better" if d < 0 else ""
