"""The metric vocabulary of a space file: each metric's name, task and better direction, and the
one rule that says whether a value is better than another (`is_better`).

Computing the metrics is the data package's job (`tuner.data.classification_metrics`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    task: str  # "classification" | "regression" | "any"
    direction: str  # "maximize" | "minimize"


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("loss", "any", "minimize"),  # the training criterion (class-weighted if asked)
        Metric("accuracy", "classification", "maximize"),
        Metric("balanced_accuracy", "classification", "maximize"),
        Metric("precision_macro", "classification", "maximize"),
        Metric("precision_weighted", "classification", "maximize"),
        Metric("recall_macro", "classification", "maximize"),
        Metric("recall_weighted", "classification", "maximize"),
        Metric("f1_macro", "classification", "maximize"),
        Metric("f1_weighted", "classification", "maximize"),
        Metric("roc_auc", "classification", "maximize"),  # binary; one-vs-rest macro otherwise
        Metric("log_loss", "classification", "minimize"),  # unweighted cross-entropy
        Metric("rmse", "regression", "minimize"),
        Metric("mae", "regression", "minimize"),
        Metric("r2", "regression", "maximize"),
    )
}


def metrics_for(task: str) -> list[str]:
    return [m.name for m in METRICS.values() if m.task in (task, "any")]


def is_better(direction: str, new: float, old: float | None, min_delta: float = 0.0) -> bool:
    """Whether `new` beats `old` (None: nothing yet) by more than `min_delta` in `direction`.
    Every comparison of two objective values in tuner goes through here."""
    if old is None:
        return True
    return new > old + min_delta if direction == "maximize" else new < old - min_delta
