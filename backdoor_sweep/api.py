"""The Python API for notebooks: run a sweep from a spec dict, load it, choose, draw, report.

Everything the command line does, as functions that return data (the plots compute first and
draw second: ``*_info`` returns a small dataclass, ``render_*`` a plotly figure, `write_figure`
writes it as HTML, PNG, PDF or SVG). Typical use::

    from backdoor_sweep import api as bs
    bs.run({"name": "demo", "learner": {"name": "svm_linear"}, ...}, store="results")
    df = bs.load("results", "demo")
    print(bs.verdict_info(df).headline)

Bad input raises `SweepError` with one line naming the field, the value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# from the defining modules: ``analysis.load`` the module would shadow ``analysis.load`` the function
from analysis.heatmap import default_axes, heatmap_info
from analysis.heatmap_figure import render_heatmap
from analysis.importance import importance_info, render_importance
from analysis.load import load
from analysis.parallel import parallel_info, render_parallel
from analysis.pareto import pareto_points, render_pareto
from analysis.privacy import privacy_info, render_privacy
from analysis.report import build_report
from analysis.select import select_robust
from analysis.static import write_figure
from analysis.verdict import verdict_info
from backdoor_sweep.errors import SweepError
from sweep.query import run_query
from sweep.store import Store

__all__ = [
    "Store",
    "SweepError",
    "build_report",
    "default_axes",
    "heatmap_info",
    "importance_info",
    "load",
    "parallel_info",
    "pareto_points",
    "privacy_info",
    "render_heatmap",
    "render_importance",
    "render_parallel",
    "render_pareto",
    "render_privacy",
    "run",
    "run_query",
    "select_robust",
    "spec_from",
    "verdict_info",
    "write_figure",
]


def spec_from(spec: Any, *, store: str | Path | None = None, name: str | None = None):
    """A validated `sweep.spec.Spec` from a dict (as in YAML), a YAML path or a Spec.

    ``store`` and ``name`` override the spec's; a dict without ``store`` writes to ``results``.
    """
    from sweep.spec import Spec, load_spec, parse_spec, with_overrides

    if isinstance(spec, Spec):
        parsed = spec
    elif isinstance(spec, (str, Path)):
        parsed = load_spec(spec)
    else:
        parsed = parse_spec(spec, source="spec")
    if store is None and name is None:
        return parsed
    return with_overrides(parsed, name=name, store=str(store) if store is not None else None)


def run(
    spec: Any,
    *,
    store: str | Path | None = None,
    name: str | None = None,
    smoke: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    address: str | None = None,
    num_cpus: int | None = None,
    show_progress: bool = False,
):
    """Run a sweep (`sweep.launcher.run_sweep`) and return its `SweepOutcome`.

    ``spec`` is a dict as written in a YAML spec, a path to one, or a Spec. ``smoke`` runs the
    tiny version (first two values per axis, first seed; the name gets ``-smoke``). Ray starts
    in-process unless it is already running in this process or ``address`` names a cluster.
    A sweep of the same name in the store is refused unless ``resume`` or ``overwrite``.
    """
    from sweep.launcher import run_sweep

    if resume and overwrite:
        raise SweepError("resume and overwrite must not be given together; got both")
    s = spec_from(spec)
    if smoke:
        s = s.smoke()
    if store is not None or name is not None:
        s = spec_from(s, store=store, name=name)
    return run_sweep(
        s,
        address=address,
        resume=resume,
        overwrite=overwrite,
        show_progress=show_progress,
        num_cpus=num_cpus,
    )
