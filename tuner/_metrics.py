"""Validation metrics: names, the direction that is better, and how to compute them.

Computed from model outputs on the CPU in numpy; scikit-learn's implementations are the
reference the tests compare against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    name: str
    task: str  # "classification" | "regression" | "any"
    direction: str  # "maximize" | "minimize"
    compute: Callable[[np.ndarray, np.ndarray], float]  # (y_true, model output) -> value


def _accuracy(y: np.ndarray, logits: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=1) == y))


def _rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - y) ** 2)))


def _mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - y)))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    total = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / total if total > 0 else 0.0


def _unused(y: np.ndarray, out: np.ndarray) -> float:  # the loss comes from the training loop
    raise NotImplementedError


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("loss", "any", "minimize", _unused),
        Metric("accuracy", "classification", "maximize", _accuracy),
        Metric("rmse", "regression", "minimize", _rmse),
        Metric("mae", "regression", "minimize", _mae),
        Metric("r2", "regression", "maximize", _r2),
    )
}


def metrics_for(task: str) -> list[str]:
    return [m.name for m in METRICS.values() if m.task in (task, "any")]


def is_better(direction: str, new: float, old: float | None, min_delta: float = 0.0) -> bool:
    if old is None:
        return True
    return new > old + min_delta if direction == "maximize" else new < old - min_delta
