"""Turning a store into decisions: load, aggregate over seeds, heatmaps, robust choice, Pareto
fronts and the self-contained HTML report. Plotting libraries are imported only when drawing.

Plots compute first and draw second: ``heatmap_info``, ``importance_info``, ``parallel_info``,
``privacy_info`` return small dataclasses; ``render_*`` turn them into plotly figures and
``write_figure`` writes a figure as HTML, PNG, PDF or SVG. Typical use::

    from analysis import load, select_robust, verdict_info, build_report
    df = load("results", "digits_svm_rbf")
    print(verdict_info(df).headline)
    print(select_robust(df, objective="worst_asr").reason)
    build_report("results", out="report.html")

`backdoor_sweep.api` adds running a sweep from a spec dict (the notebook API).
"""

from __future__ import annotations

from backdoor_sweep.exports import lazy_exports

_WHERE = {
    "HeatmapInfo": "heatmap",
    "ImportanceInfo": "importance",
    "ParallelInfo": "parallel",
    "PrivacyInfo": "privacy",
    "Verdict": "verdict",
    "accurate_configurations": "select",
    "default_axes": "heatmap",
    "importance_info": "importance",
    "most_vulnerable": "verdict",
    "parallel_info": "parallel",
    "privacy_info": "privacy",
    "render_importance": "importance",
    "render_parallel": "parallel",
    "render_privacy": "privacy",
    "verdict_info": "verdict",
    "write_figure": "static",
    "Selection": "select",
    "BestSoFar": "search_views",
    "ScatterInfo": "search_views",
    "aggregate": "aggregate",
    "attack_axes": "select",
    "best_so_far_info": "search_views",
    "decision_rows": "search_views",
    "build_report": "report",
    "choice_axes": "select",
    "configuration_metric": "select",
    "explain_info": "explain",
    "heatmap_info": "heatmap",
    "is_grid": "search_views",
    "load": "load",
    "non_dominated": "pareto",
    "pareto_front": "pareto",
    "pareto_points": "pareto",
    "rebuild": "explain",
    "render_best_so_far": "search_views",
    "render_heatmap": "heatmap_figure",
    "render_pareto": "pareto",
    "render_scatter": "search_views",
    "report_html": "report",
    "scatter_info": "search_views",
    "search_section": "search_views",
    "select_robust": "select",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)

# Functions named like their modules are bound now: importing the module later would otherwise
# replace the lazy name with the module (``from analysis import load`` must give the function).
from analysis.aggregate import aggregate  # noqa: E402, F401
from analysis.load import load  # noqa: E402, F401
