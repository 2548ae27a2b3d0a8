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
    "aggregate": "aggregate",
    "attack_axes": "select",
    "build_report": "report",
    "choice_axes": "select",
    "configuration_metric": "select",
    "explain_info": "explain",
    "heatmap_axes": "report",
    "heatmap_info": "heatmap",
    "load": "load",
    "non_dominated": "pareto",
    "pareto_front": "pareto",
    "pareto_points": "pareto",
    "rebuild": "explain",
    "render_heatmap": "heatmap",
    "render_pareto": "pareto",
    "report_html": "report",
    "select_robust": "select",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
