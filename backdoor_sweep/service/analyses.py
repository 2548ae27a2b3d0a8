"""What the sweep pages show, computed in the server from the store with `analysis`.

The recommended configuration so far (`analysis.verdict`, which reconciles the picks of
`analysis.select.select_robust`, on the results stored until now), heatmaps (`analysis.heatmap`:
the data first, then the plotly figure of `analysis.heatmap_figure`, sent as its JSON for
plotly.js to draw) and learning curves (`analysis.curves`). A sweep's frames are read once per
*state* — the names, sizes and times of its part files — so pages that poll a running sweep reread
only when a trial has finished.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from typing import Any

import pandas as pd

from backdoor_sweep.errors import SweepError
from sweep.store import Store

#: sweeps whose frames are kept in memory
CACHED_SWEEPS = 8
#: the clean-accuracy tolerance of the pages' recommendation and heatmaps (the CLI's default)
CLEAN_TOLERANCE = 0.01


def plain(obj: Any) -> Any:
    """``obj`` with NumPy scalars as Python values and NaN/inf as None: strict JSON."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _figure_json(fig, **info: Any) -> str:
    """``{"figure": <plotly JSON>, **info}`` without decoding the figure again."""
    head = json.dumps(info, default=str)[1:-1]
    return '{"figure": ' + fig.to_json() + (", " + head if head else "") + "}"


class Results:
    """Cached frames of the sweeps of one store and what the pages draw from them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[tuple, dict[str, Any]]] = OrderedDict()
        self._sweep_locks: dict[str, threading.Lock] = {}

    def state(self, name: str) -> tuple:
        parts = [p for table in ("trials", "curves") for p in self.store.parts(name, table)]
        return tuple((p.parent.name, p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in parts)

    def _entry(self, name: str) -> dict[str, Any]:
        """The cache entry of ``name`` for its current state (frames and derived values).

        One request per sweep reads a new state; the others wait for it instead of repeating the
        work (many pages poll the same sweep).
        """
        with self._lock:
            lock = self._sweep_locks.setdefault(name, threading.Lock())
        with lock:
            state = self.state(name)
            hit = self._cache.get(name)
            if hit is not None and hit[0] == state:
                with self._lock:
                    self._cache.move_to_end(name)
                return hit[1]
            entry: dict[str, Any] = {
                "trials": self.store.read_table("trials", name),
                "curves": self.store.read_table("curves", name),
            }
            entry["summary"] = self._summary(entry["trials"], entry["curves"])
            with self._lock:
                self._cache[name] = (state, entry)
                self._cache.move_to_end(name)
                while len(self._cache) > CACHED_SWEEPS:
                    self._cache.popitem(last=False)
            return entry

    def trials(self, name: str, where: str | None = None) -> pd.DataFrame:
        """The sweep's results; with ``where`` (SQL, as every command's ``--where``) filtered by
        the store's locked-down DuckDB (`analysis.load.load`)."""
        from analysis.load import load

        if where:
            return load(self.store, name, where)
        df = self._entry(name)["trials"]
        if df.empty:
            raise SweepError(f"sweep {name!r} has no results stored yet")
        return df

    # -- the sweep page -----------------------------------------------------------------------
    def summary(self, name: str) -> dict[str, Any]:
        """Axes, metrics and heatmap defaults for the page's pickers, and the choice so far."""
        return self._entry(name)["summary"]

    def _summary(self, df: pd.DataFrame, curves: pd.DataFrame) -> dict[str, Any]:
        from analysis.heatmap import default_axes
        from analysis.select import grid_axes
        from analysis.verdict import verdict_info
        from sweep.schema import METRICS

        out: dict[str, Any] = {
            "axes": [],
            "metrics": [],
            "heatmap": None,
            "recommended": None,
            "recommended_error": "no results stored yet",
            "has_curves": not curves.empty,
            "n_ok": 0,
            "n_error": 0,
        }
        if df.empty:
            return out
        ok = df[df["status"] == "ok"] if "status" in df else df
        out["n_ok"], out["n_error"] = len(ok), len(df) - len(ok)
        out["axes"] = grid_axes(df)
        out["metrics"] = [
            c
            for c in df.columns
            if c in METRICS and pd.to_numeric(ok[c], errors="coerce").notna().any()
        ]
        try:
            x, y, facets = default_axes(df)
            out["heatmap"] = {"x": x, "y": y, "facets": facets}
        except SweepError:
            pass
        try:
            v = verdict_info(df)
        except SweepError as err:
            out["recommended_error"] = str(err)
            return out
        out["recommended_error"] = None
        out["recommended"] = plain(
            {
                "objective": v.basis,
                "choice": v.recommended.choice,
                "metrics": v.recommended.values,
                "headline": v.headline,
                "why": v.why,
                "agreement": v.agreement,
                "limits": v.limits,
                "clean_tolerance": v.clean_tolerance,
                "n_accurate": v.n_accurate,
                "n_configurations": v.n_configurations,
            }
        )
        return out

    def heatmap(
        self,
        name: str,
        *,
        metric: str,
        x: str,
        y: str,
        facets: list[str],
        agg: str,
        where: str | None,
    ) -> str:
        """The heatmap figure's JSON and the grid it shows (what ``backdoor-sweep heatmap`` draws,
        the recommended configuration outlined)."""
        from analysis.heatmap import heatmap_info
        from analysis.heatmap_figure import render_heatmap

        recommended = self.summary(name)["recommended"]
        info = heatmap_info(
            self.trials(name, where),
            x=x,
            y=y,
            metric=metric,
            facet=facets or None,
            agg=agg,
            clean_tolerance=CLEAN_TOLERANCE,
            mark=recommended["choice"] if recommended else None,
        )
        fig = render_heatmap(info)
        fig.update_layout(title_text=f"{name}: {fig.layout.title.text}")
        return _figure_json(
            fig,
            x_values=info.x_values,
            y_values=info.y_values,
            hidden=info.hidden,
            panels=[p.title for p in info.panels],
            aggregated_over=info.aggregated_over,
        )

    def curves(self, name: str, *, where: str | None, colour: str | None) -> str:
        """Backdoor learning curves (TS dashed, TS+BT solid), a panel per configuration."""
        from analysis.curves import curves_info, render_curves
        from analysis.select import attack_axes, choice_axes

        entry = self._entry(name)
        if entry["curves"].empty:
            raise SweepError(
                f"sweep {name!r} has no learning curves; run it with `curves: {{enabled: true}}` "
                "in its spec"
            )
        all_rows = self.trials(name)
        if colour is None:
            attack = attack_axes(all_rows)
            colour = "poison_rate" if "poison_rate" in all_rows.columns or not attack else attack[0]
        info = curves_info(
            self.trials(name, where),
            entry["curves"],
            panel_by=choice_axes(all_rows),
            colour_by=colour,
        )
        fig = render_curves(
            info, title=f"{name}: backdoor learning curves (TS dashed, TS+BT solid)"
        )
        return _figure_json(fig, panels=len(info.panels), colour_by=colour)

    def select(
        self,
        name: str,
        *,
        objective: str,
        clean_tolerance: float,
        axes: list[str] | None,
        where: str | None,
    ) -> dict[str, Any]:
        """What ``backdoor-sweep select --json`` prints for the same options."""
        from analysis.select import select_robust

        sel = select_robust(
            self.trials(name, where),
            clean_tolerance=clean_tolerance,
            objective=objective,
            axes=axes,
        )
        return {"sweep": name, **sel.as_dict()}
