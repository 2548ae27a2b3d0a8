"""Slope-guided screening (``search.strategy: slope_screen``): the attack grid for a few only.

Among accurate configurations the backdoor learning slope tracks the attack success rate
(docs/science.md, Slope and Robust choice), and it needs one attack, not all of them. So:

1. **Stage one** fits every configuration (the grid's, or a random search's draw) once per seed
   at one *probe* attack setting — ``search.probe``, by default the strongest of the grid
   (`sweep.search.probe_setting`). A stage-one result is one learner training: the β = 0 model
   of the probe's poisoned training set (its clean samples), whose clean accuracy and analytic
   slope θ toward the probe's poison are all the screen ranks by (``SCREEN_CURVES``,
   `trainables.trial`). Its results are stored with ``stage = "screen"``; the robust choice
   never reads them (they saw one attack only).
2. **The screen**: a configuration is *eligible* when its seed-mean clean accuracy is within
   ``search.clean_tolerance`` of the best; the eligible ones are ranked by seed-mean slope
   (lowest first; an undefined slope last, then higher clean accuracy, then the order of the
   configurations) and the first ``search.keep`` (default 3) — or ``search.keep_fraction`` of the
   eligible — are kept.
3. **Stage two** runs the full attack grid and every seed on the kept configurations, stored with
   ``stage = "full"``: exactly the trials a full sweep would have run for them.

The kept configurations follow from the stored stage-one rows alone, so ``resume`` and
``backdoor-sweep verify`` recompute the same ones.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sweep.plan import TrialPlan, grid_configurations, plan_configurations
from sweep.search import FULL_STAGE, SCREEN_STAGE, STAGE_COLUMN, n_keep, probe_setting
from sweep.searching import format_values, run_plans, stored_rows

if TYPE_CHECKING:
    import pandas as pd

    from sweep.progress import Progress
    from sweep.spec import Spec
    from sweep.store import Store

#: stage one's results (`trainables.trial`): the β = 0 fit alone and its analytic slope — one
#: learner training per result, whatever the spec's own curves settings
SCREEN_CURVES = {"enabled": True, "betas": [0.0], "cross_check": False, "probe": True}


def configurations(spec: Spec) -> list[dict[str, Any]]:
    """The configurations stage one screens: the grid's, or a random search's draw."""
    if spec.search.algorithm == "random":
        from sweep.sampling import sample_configurations

        return sample_configurations(spec)
    return grid_configurations(spec)


def screen_plans(spec: Spec, configs: list[dict[str, Any]] | None = None) -> list[TrialPlan]:
    """Stage one: every configuration (default `configurations`) × the probe setting × every
    seed, with its learning curve."""
    return plan_configurations(
        spec,
        configurations(spec) if configs is None else configs,
        inner=[probe_setting(spec)],
        stage=SCREEN_STAGE,
        extra={"curves": dict(SCREEN_CURVES)},
    )


def full_plans(spec: Spec, kept: list[dict[str, Any]]) -> list[TrialPlan]:
    """Stage two: the kept configurations × every attack setting × every seed."""
    return plan_configurations(spec, kept, stage=FULL_STAGE)


@dataclass
class Screen:
    """The outcome of stage one: every configuration's screen values and the kept ones."""

    probe: dict[str, Any]
    clean_tolerance: float
    #: one row per configuration: its values, clean_acc, slope, eligible, kept (plain dicts)
    table: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_eligible(self) -> int:
        return sum(r["eligible"] for r in self.table)

    def as_dict(self) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "clean_tolerance": self.clean_tolerance,
            "eligible": self.n_eligible,
            "kept": self.kept,
            "table": self.table,
        }


def screen(spec: Spec, plans: list[TrialPlan], rows: pd.DataFrame) -> Screen:
    """Rank stage one's configurations (``plans``) from its stored ``rows``; see the module docstring."""
    ok = rows
    if STAGE_COLUMN in ok:
        ok = ok[ok[STAGE_COLUMN] == SCREEN_STAGE]
    if "status" in ok:
        ok = ok[ok["status"] == "ok"]
    by_trial = {str(t): g for t, g in ok.groupby("trial_id", sort=False)}
    table = []
    for order, plan in enumerate(plans):
        got = by_trial.get(plan.trial_id)
        clean = _mean(got, "clean_acc")
        slope = _mean(got, "slope")
        table.append({**plan.outer, "clean_acc": clean, "slope": slope, "order": order})
    finite = [r["clean_acc"] for r in table if r["clean_acc"] is not None]
    best = max(finite) if finite else None
    tol = spec.search.clean_tolerance
    for r in table:
        r["eligible"] = (
            best is not None and r["clean_acc"] is not None and r["clean_acc"] >= best - tol - 1e-12
        )
    ranked = sorted(
        (r for r in table if r["eligible"]),
        key=lambda r: (r["slope"] is None, r["slope"] or 0.0, -r["clean_acc"], r["order"]),
    )
    k = n_keep(spec.search, len(ranked))
    kept_orders = {r["order"] for r in ranked[:k]}
    for r in table:
        r["kept"] = r["order"] in kept_orders
    kept = [dict(plans[r["order"]].outer) for r in ranked[:k]]
    for r in table:
        r.pop("order")
    return Screen(probe_setting(spec), tol, table, kept)


def _mean(rows: pd.DataFrame | None, column: str) -> float | None:
    """Seed-mean of a column over finite values (None when there is none)."""
    if rows is None or column not in rows:
        return None
    values = np.asarray(rows[column].to_numpy(dtype=float, na_value=np.nan), dtype=float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None


def screen_summary(
    spec: Spec,
    screened: Screen | None,
    n_screen: int,
    n_full: int,
    fits: dict[str, int] | None = None,
) -> dict:
    """What sweep.json records about the screen: results and learner trainings (``fits``, the
    stored ``n_fits`` per stage) per stage, and what the full grid costs.

    A full-grid result costs what a stage-two result costs — the same trial — so the full grid's
    fits are the stage-two fits per result times its results: exact when every result trains
    once (no learning curves), an estimate otherwise (``full_grid_fits_estimated``).
    """
    from sweep.search import n_configurations, n_inner_cells

    n_seeds = len(spec.seeds)
    full_grid = n_configurations(spec) * n_inner_cells(spec) * n_seeds
    out: dict[str, Any] = {
        "strategy": "slope_screen",
        "algorithm": spec.search.algorithm,
        "stage_results": {SCREEN_STAGE: n_screen, FULL_STAGE: n_full},
        "full_grid_results": full_grid,
        "fraction_of_full_grid": round((n_screen + n_full) / full_grid, 4) if full_grid else None,
    }
    if fits is not None:
        used = fits.get(SCREEN_STAGE, 0) + fits.get(FULL_STAGE, 0)
        per_result = fits.get(FULL_STAGE, 0) / n_full if n_full else None
        grid_fits = None if per_result is None else round(per_result * full_grid)
        out.update(
            stage_fits=dict(fits),
            full_grid_fits=grid_fits,
            full_grid_fits_estimated=bool(spec.curves.enabled),
            fits_fraction_of_full_grid=round(used / grid_fits, 4) if grid_fits else None,
        )
    if screened is not None:
        out.update(screened.as_dict())
    return out


class ScreenRun:
    """Run a slope screen: stage one, the screen, stage two (`sweep.searching.run_search`)."""

    def __init__(self, spec: Spec, store: Store) -> None:
        self.spec, self.store = spec, store
        self.stage_one = screen_plans(spec)
        self.n_configurations = len(self.stage_one)
        self.screened = None
        self.stage_two: list[TrialPlan] | None = None

    def _done(self) -> set[str]:
        return (
            self.store.done_trials(self.spec.name) if self.store.exists(self.spec.name) else set()
        )

    def _screen(self) -> None:
        self.screened = screen(self.spec, self.stage_one, stored_rows(self.store, self.spec.name))
        self.stage_two = full_plans(self.spec, self.screened.kept)

    def budget(self, fresh: bool) -> tuple[int, int]:
        """Trials the screen runs at most, and how many of them are still to run (all of them
        when ``fresh``). Until stage one is complete stage two counts as ``search.keep`` (or
        ``keep_fraction``) of every configuration; then it is the kept ones' trials exactly."""
        done = set() if fresh else self._done()
        n_one = len(self.stage_one)
        one_left = len({p.trial_id for p in self.stage_one} - done)
        if one_left:
            n_two = n_keep(self.spec.search, n_one)
            return n_one + n_two, one_left + n_two
        self._screen()
        two = {p.trial_id for p in self.stage_two or []}
        return n_one + len(two), len(two - done)

    def run(self, data, counts: dict, progress: Progress) -> bool:
        total = sum(len(p.results) for p in self.stage_one)
        print(
            f"stage one: {len(self.stage_one)} configurations at the probe "
            f"({format_values(probe_setting(self.spec))}) x {len(self.spec.seeds)} seeds = {total} "
            f"results; stage two runs the full attack grid on at most "
            f"{n_keep(self.spec.search, len(self.stage_one))} of them",
            file=sys.stderr,
            flush=True,
        )
        if not run_plans(self.spec, self.store, data, self.stage_one, counts, progress):
            return False
        self._screen()
        kept = ", ".join(format_values(c) for c in self.screened.kept) or "none"
        print(
            f"stage two: the full attack grid on {len(self.stage_two)} of "
            f"{self.screened.n_eligible} accurate configurations: {kept}",
            file=sys.stderr,
            flush=True,
        )
        return run_plans(self.spec, self.store, data, self.stage_two, counts, progress)

    def n_results(self) -> int:
        plans = self.stage_one + (self.stage_two or [])
        return sum(len(p.results) for p in plans)

    def summary(self) -> dict:
        n_one = sum(len(p.results) for p in self.stage_one)
        n_two = sum(len(p.results) for p in self.stage_two or [])
        return screen_summary(
            self.spec, self.screened, n_one, n_two, stage_fits(self.store, self.spec.name)
        )


def stage_fits(store: Store, name: str) -> dict[str, int] | None:
    """Learner trainings per stage: the sum of the stored ``n_fits`` of finished results (None
    for a store written before the column existed)."""
    rows = stored_rows(store, name)
    if rows.empty or "n_fits" not in rows or STAGE_COLUMN not in rows:
        return None
    if "status" in rows:
        rows = rows[rows["status"] == "ok"]
    fits = rows["n_fits"].fillna(0).astype(int).groupby(rows[STAGE_COLUMN]).sum()
    return {str(stage): int(n) for stage, n in fits.items()}
