"""Reading results back: tables of trials and studies, comparisons of strategies, Optuna's views of
a study (PNG and one interactive page), the Pareto front's views, a comparison's report, figures
of a final model, and `tuner export`'s configuration file.

Analysis reads what the search and tracking layers stored; it never runs a trial.
"""

from tuner.analysis._comparison import TOLERANCE, Comparison, build_comparison
from tuner.analysis._export import export_study
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

__all__ = [
    "SUMMARY_HEADERS", "TOLERANCE", "VIEWS", "Comparison", "GridPlan", "StudyPlan",
    "best_so_far_bands", "build_comparison", "clean", "comparison_files", "comparison_metrics",
    "confusion_png", "export_study", "front_views", "page", "plural", "ranked", "reach", "report_markdown",
    "residual_png", "study_views", "summarise", "summary_rows", "trials_frame",
    "write_study_views",
]
