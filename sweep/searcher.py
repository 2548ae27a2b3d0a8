"""Optuna through Ray Tune: a searcher that knows the store, and its state in the sweep folder.

`StoreAwareOptuna` is Ray Tune's ``OptunaSearch`` over the spec's space (`sweep.sampling.tune_space`,
converted by ``OptunaSearch.convert_search_space``), with ``search.seed``: TPE for one objective,
NSGA-II for several (population `population_size`, so a small budget still sees generations).
It adds what a sweep needs around it:

- **one trial per configuration**: a configuration drawn again (Optuna does that on small or
  categorical spaces) is told its known value, or a failure while its first draw still runs, and
  another is asked for; after ``MAX_REDRAWS`` repeats in a row the search ends (the space is
  exhausted);
- **its state in the sweep folder**: after each finished trial the driver pickles the searcher
  (``searcher.save``) to ``<sweep>/searcher.pkl`` atomically, after the trial's part file; `resume`
  restores it (``searcher.restore``) — Optuna's study and its sampler's random state — marks the
  trials that were running when the driver stopped as failed, and tells the study about every
  configuration of the store it does not know yet (one stored between the part and the state).
  The store stays the truth: a lost state file costs the sampler's memory, never a result.
"""

from __future__ import annotations

import math
import os
import pickle
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from backdoor_sweep.errors import SweepError
from sweep.sampling import configuration_key, tune_space

if TYPE_CHECKING:
    import pandas as pd

    from sweep.spec import Spec

STATE_FILE = "searcher.pkl"
#: repeated draws in a row after which the space counts as exhausted
MAX_REDRAWS = 50


def population_size(num_samples: int) -> int:
    """NSGA-II's population: a quarter of the budget, at least 4 and at most Optuna's 50."""
    return max(4, min(50, math.ceil(num_samples / 4)))


def make_searcher(spec: Spec) -> StoreAwareOptuna:
    """A fresh `StoreAwareOptuna` for ``spec`` (Optuna's per-trial log lines off: the store has them)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return StoreAwareOptuna(spec)


class StoreAwareOptuna(OptunaSearch):
    """``OptunaSearch`` that never runs a configuration twice and catches up with the store."""

    def __init__(self, spec: Spec) -> None:
        search = spec.search
        metrics = [o.metric for o in search.objectives]
        modes = [o.mode for o in search.objectives]
        if len(metrics) == 1:
            sampler = optuna.samplers.TPESampler(seed=search.seed)
            metric, mode = metrics[0], modes[0]
        else:
            sampler = optuna.samplers.NSGAIISampler(
                seed=search.seed, population_size=population_size(search.num_samples or 1)
            )
            metric, mode = metrics, modes
        space = OptunaSearch.convert_search_space(tune_space(spec))
        super().__init__(space=space, metric=metric, mode=mode, sampler=sampler)
        self._spec = spec
        self._keys: dict[str, str] = {}  # Tune trial id -> configuration key (trial id)
        self._values: dict[str, Any] = {}  # configuration key -> objective values (None: failed)
        self._taken: set[str] = set()  # configurations evaluated or being evaluated
        self.exhausted = False

    def suggest(self, trial_id: str):
        for _ in range(MAX_REDRAWS):
            params = super().suggest(trial_id)
            key = configuration_key(self._spec, params)
            if key not in self._taken:
                self._taken.add(key)
                self._keys[trial_id] = key
                return params
            ot_trial = self._ot_trials.pop(trial_id)
            known = self._values.get(key)
            if known is not None:
                self._ot_study.tell(ot_trial, known)
            else:  # its first draw is still running (or failed)
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
        self.exhausted = True
        return Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        super().on_trial_complete(trial_id, result=result, error=error)
        key = self._keys.pop(trial_id, None)
        if key is not None:
            self._values[key] = None if error or not result else self._objective_of(result)

    def _objective_of(self, values: dict) -> Any:
        if isinstance(self.metric, list):
            out = [_number(values.get(m)) for m in self.metric]
            return None if any(v is None for v in out) else out
        return _number(values.get(self.metric))

    def catch_up(self, stored: dict[str, tuple[dict, dict]]) -> None:
        """Forget the Tune trials of an earlier run and learn every stored configuration.

        ``stored``: configuration key -> (its parameters, its objective values by metric;
        empty when every result failed).
        """
        for tid, ot_trial in list(self._ot_trials.items()):
            if tid not in self._completed_trials:  # running when the driver stopped
                self._ot_study.tell(ot_trial, state=TrialState.FAIL)
        self._ot_trials.clear()
        self._completed_trials.clear()
        self._keys.clear()
        for key, (params, objective) in stored.items():
            if key in self._values:
                continue
            values = self._objective_of(objective) if objective else None
            many = isinstance(values, list)
            self._ot_study.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.FAIL if values is None else TrialState.COMPLETE,
                    values=values if many else None,
                    value=None if many else values,
                    params={k: params[k] for k in self._space},
                    distributions=self._space,
                )
            )
            self._values[key] = values
        self._taken = set(self._values)


def _number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# -- the state file --------------------------------------------------------------------------
def save_state(searcher, folder: Path) -> None:
    """Pickle the searcher to ``folder/searcher.pkl``: a temporary file, then a rename."""
    tmp = folder / f".tmp-{uuid.uuid4().hex}-{STATE_FILE}"
    searcher.save(str(tmp))
    os.replace(tmp, folder / STATE_FILE)


def restore_state(searcher, folder: Path) -> bool:
    """Load ``folder/searcher.pkl`` into a fresh searcher; False when there is none yet.

    The file is a pickle: resume only sweeps whose store you trust, like any Ray Tune state.
    """
    path = folder / STATE_FILE
    if not path.is_file():
        return False
    try:
        searcher.restore(str(path))
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as err:
        raise SweepError(
            f"store file {path} is corrupt ({type(err).__name__}: {err}); delete it to resume "
            "the search with a fresh searcher (every stored result is kept)"
        ) from None
    return True


def stored_objectives(spec: Spec, df: pd.DataFrame) -> dict[str, tuple[dict, dict]]:
    """Configuration key -> (parameters, objective values) of every configuration in ``df``."""
    from sweep.plan import outer_axes
    from sweep.sampling import objective_value

    axes = outer_axes(spec)
    names = [o.metric for o in spec.search.objectives]
    out: dict[str, tuple[dict, dict]] = {}
    for trial_id, rows in df.groupby("trial_id", sort=False):
        records = rows.to_dict("records")
        params = {a: _plain(records[0][a]) for a in axes}
        ok = [(r, r) for r in records if r.get("status", "ok") == "ok"]
        objective = {n: objective_value(ok, n, spec.inner_axes()) for n in names} if ok else {}
        out[str(trial_id)] = (params, objective)
    return out


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
