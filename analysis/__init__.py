"""Turning a store into decisions: load, aggregate over seeds, heatmaps, robust choice, Pareto
fronts and the self-contained HTML report. Plotting libraries are imported only when drawing.

Typical use::

    from analysis import load, select_robust, build_report
    df = load("results", "digits_svm_rbf")
    print(select_robust(df, objective="worst_asr").reason)
    build_report("results", out="report.html")
"""

from __future__ import annotations

from backdoor_sweep.exports import lazy_exports

_WHERE = {
    "HeatmapInfo": "heatmap",
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
    "render_heatmap": "heatmap",
    "render_pareto": "pareto",
    "render_scatter": "search_views",
    "report_html": "report",
    "scatter_info": "search_views",
    "search_section": "search_views",
    "select_robust": "select",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
