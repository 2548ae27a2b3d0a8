"""Turning a store into decisions: load, aggregate over seeds, heatmaps, robust choice, Pareto
fronts and the self-contained HTML report. Plotting libraries are imported only when drawing.

Typical use::

    from analysis import load, select_robust, build_report
    df = load("results", "digits_svm_rbf")
    print(select_robust(df, objective="worst_asr").reason)
    build_report("results", out="report.html")
"""

from __future__ import annotations

from analysis.aggregate import aggregate
from analysis.explain import explain_info, rebuild
from analysis.heatmap import HeatmapInfo, heatmap_info, render_heatmap
from analysis.load import load
from analysis.pareto import non_dominated, pareto_front, pareto_points, render_pareto
from analysis.report import build_report, report_html
from analysis.select import Selection, attack_axes, choice_axes, configuration_metric, select_robust

__all__ = [
    "HeatmapInfo",
    "Selection",
    "aggregate",
    "attack_axes",
    "build_report",
    "choice_axes",
    "configuration_metric",
    "explain_info",
    "heatmap_info",
    "load",
    "non_dominated",
    "pareto_front",
    "pareto_points",
    "rebuild",
    "render_heatmap",
    "render_pareto",
    "report_html",
    "select_robust",
]
