"""Reading results back: tables of trials and studies, comparisons of strategies, parameter
importances, Optuna's views of a study (PNG and one interactive page), the Pareto front's views, a
comparison's report, figures of a final model, and `tuner export`'s configuration file.

Analysis reads what the search and tracking layers stored; it never runs a trial.

Names load on first use, so running a study does not import plotting libraries before it ends.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.analysis._comparison import TOLERANCE, Comparison, build_comparison
    from tuner.analysis._export import export_study
    from tuner.analysis._importances import param_importances
    from tuner.analysis._plan import GridPlan, StudyPlan
    from tuner.analysis._plots import confusion_png, residual_png
    from tuner.analysis._report import (
        SUMMARY_HEADERS,
        best_so_far_bands,
        comparison_files,
        plural,
        report_markdown,
        summary_rows,
    )
    from tuner.analysis._results import (
        clean,
        comparison_metrics,
        ranked,
        reach,
        summarise,
        trials_frame,
    )
    from tuner.analysis._views import VIEWS, front_views, page, study_views, write_study_views

_WHERE = {
    "TOLERANCE": "_comparison",
    "Comparison": "_comparison",
    "build_comparison": "_comparison",
    "export_study": "_export",
    "param_importances": "_importances",
    "GridPlan": "_plan",
    "StudyPlan": "_plan",
    "confusion_png": "_plots",
    "residual_png": "_plots",
    "SUMMARY_HEADERS": "_report",
    "best_so_far_bands": "_report",
    "comparison_files": "_report",
    "plural": "_report",
    "report_markdown": "_report",
    "summary_rows": "_report",
    "clean": "_results",
    "comparison_metrics": "_results",
    "ranked": "_results",
    "reach": "_results",
    "summarise": "_results",
    "trials_frame": "_results",
    "VIEWS": "_views",
    "front_views": "_views",
    "page": "_views",
    "study_views": "_views",
    "write_study_views": "_views",
}

__all__ = [
    "SUMMARY_HEADERS", "TOLERANCE", "VIEWS", "Comparison", "GridPlan", "StudyPlan",
    "best_so_far_bands", "build_comparison", "clean", "comparison_files", "comparison_metrics",
    "confusion_png", "export_study", "front_views", "page", "param_importances", "plural",
    "ranked", "reach", "report_markdown", "residual_png", "study_views", "summarise",
    "summary_rows", "trials_frame", "write_study_views",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"tuner.analysis.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tuner.analysis' has no attribute {name!r}")
