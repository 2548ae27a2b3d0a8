"""Sampled configurations: the Ray Tune search space of a spec, random draws, and objective values.

- `tune_space`: each learner axis as a Ray Tune sampling domain — a range as ``tune.loguniform``,
  ``tune.uniform`` or ``tune.randint``, a list as ``tune.choice``. Random search samples it here;
  `OptunaSearch` converts the same domains into Optuna distributions (`sweep.searcher`).
- `sample_configurations`: ``search.num_samples`` distinct configurations drawn up front with a
  generator seeded by ``search.seed`` — a fixed plan, identical on every call.
- `ObjectiveTracker`: a trial's objective values over the results it has finished, aggregated as
  the robust choice aggregates a configuration (docs/science.md, Robust choice;
  ``analysis.select.configuration_metric``): ``clean_acc`` over every attack setting; any other
  metric over the attacked settings (``n_poison > 0``; all of them if none is), each seed first
  averaged over the settings, then the seeds averaged; ``worst_<m>`` the attack setting with the
  largest seed-mean. A test holds the two implementations to the same numbers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.search import Range

if TYPE_CHECKING:
    from sweep.spec import Spec

#: metrics measured on clean data: aggregated over every attack setting, poisoned or not
CLEAN_METRICS = ("clean_acc", "clean_acc_before_finetune")
#: draws per wanted configuration before a random search gives up looking for new ones
MAX_DRAWS_PER_SAMPLE = 100


def tune_space(spec: Spec) -> dict[str, Any]:
    """Learner axis -> Ray Tune domain, in grid order."""
    from ray import tune

    from sweep.plan import outer_axes

    return {
        a: spec.grid[a].domain() if isinstance(spec.grid[a], Range) else tune.choice(spec.grid[a])
        for a in outer_axes(spec)
    }


def configuration_key(spec: Spec, configuration: dict[str, Any]) -> str:
    """The trial id a configuration gets (equal values written differently get one key)."""
    from sweep.plan import plan_configurations

    return plan_configurations(spec, [configuration], inner=[{}])[0].trial_id


def sample_configurations(spec: Spec) -> list[dict[str, Any]]:
    """``num_samples`` distinct configurations drawn from `tune_space` with ``search.seed``.

    Validation refuses more samples than the space has distinct configurations; a space that is
    nearly exhausted may still yield fewer after ``MAX_DRAWS_PER_SAMPLE`` draws per sample.
    """
    space = tune_space(spec)
    rng = np.random.default_rng(spec.search.seed)
    wanted = int(spec.search.num_samples or 0)
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for _ in range(MAX_DRAWS_PER_SAMPLE * wanted):
        if len(out) == wanted:
            break
        configuration = {a: _plain(d.sample(random_state=rng)) for a, d in space.items()}
        key = configuration_key(spec, configuration)
        if key not in seen:
            seen.add(key)
            out.append(configuration)
    return out


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


class ObjectiveTracker:
    """Objective values of one trial over the results it has finished so far.

    Called with each batch a trial reports (``[{"result_id", "row"}, …]``); returns
    ``{objective: value}`` over every result seen, NaN where a metric has no finite value yet.
    """

    def __init__(self, objectives: list[str], results: list[dict], settings: list[str]) -> None:
        self.objectives = list(objectives)
        self.settings = list(settings)
        self.configs = {r["result_id"]: r for r in results}
        self.rows: list[tuple[dict, dict]] = []

    def __call__(self, batch: list[dict]) -> dict[str, float]:
        for item in batch:
            self.rows.append((self.configs[item["result_id"]], item["row"]))
        return {name: objective_value(self.rows, name, self.settings) for name in self.objectives}


def objective_value(rows: list[tuple[dict, dict]], name: str, settings: list[str]) -> float:
    """One configuration's ``name`` (a metric or ``worst_<metric>``) over (config, row) pairs."""
    worst = name.startswith("worst_")
    metric = name[len("worst_") :] if worst else name
    values = [(c, _finite(r.get(metric)), r) for c, r in rows]
    values = [(c, v, r) for c, v, r in values if v is not None]
    if metric not in CLEAN_METRICS:
        attacked = [(c, v, r) for c, v, r in values if (_finite(r.get("n_poison")) or 0) > 0]
        values = attacked or values
    if not values:
        return math.nan
    if worst:
        per_setting: dict[tuple, list[float]] = {}
        for c, v, _ in values:
            per_setting.setdefault(tuple(str(c.get(s)) for s in settings), []).append(v)
        return max(float(np.mean(v)) for v in per_setting.values())
    per_seed: dict[Any, list[float]] = {}
    for c, v, _ in values:
        per_seed.setdefault(c.get("seed"), []).append(v)
    return float(np.mean([np.mean(v) for v in per_seed.values()]))


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
