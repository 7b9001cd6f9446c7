"""PNG figures of tuner's own: a final model's test results, a Pareto front.

They are drawn on `matplotlib.figure.Figure` objects, never through pyplot: no backend is chosen
or switched (a notebook keeps its inline backend) and no window can open.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import optuna
from matplotlib.figure import Figure
from optuna.trial import TrialState


def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _subplots(ncols: int = 1, **kwargs: object) -> tuple[Figure, np.ndarray]:
    fig = Figure(**kwargs)  # type: ignore[arg-type]
    return fig, np.atleast_1d(fig.subplots(1, ncols))


def confusion_png(matrix: np.ndarray, classes: Sequence[str], title: str) -> bytes:
    """Counts per (true, predicted) class; the colour is the share of the true class's rows."""
    k = len(classes)
    size = min(4 + 0.45 * k, 14)
    fig, (ax,) = _subplots(figsize=(size, size), dpi=100)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:  # beyond that the numbers are unreadable; the colours still tell
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
    names = [str(c) for c in classes]
    ax.set_xticks(range(k), names, rotation=90 if k > 10 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return png_bytes(fig)


def residual_png(y: np.ndarray, pred: np.ndarray, title: str) -> bytes:
    """Residuals (true - predicted) against the prediction, and predicted against true."""
    fig, (left, right) = _subplots(2, figsize=(10, 4.2), dpi=100)
    left.scatter(pred, y - pred, s=10, alpha=0.6)
    left.axhline(0.0, color="black", linewidth=0.8)
    left.set_xlabel("predicted")
    left.set_ylabel("residual (true - predicted)")
    low, high = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    right.scatter(y, pred, s=10, alpha=0.6)
    right.plot([low, high], [low, high], color="black", linewidth=0.8)
    right.set_xlabel("true")
    right.set_ylabel("predicted")
    fig.suptitle(title)
    return png_bytes(fig)


def front_png(study: optuna.Study, names: list[str], front: set[int]) -> bytes:
    """Every complete trial on the first two objectives; the Pareto front (`front`) in red."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    fig, (ax,) = _subplots(figsize=(6, 4.5), dpi=100)
    x, y = (0, 1) if len(names) > 1 else (0, 0)
    for on, colour, label in ((False, "lightgray", "trials"), (True, "tab:red", "Pareto front")):
        pts = [t for t in done if (t.number in front) == on]
        ax.scatter([t.values[y] for t in pts], [t.values[x] for t in pts], s=18, c=colour,
                   label=label)
    ax.set_xlabel(names[y])
    ax.set_ylabel(names[x])
    ax.legend()
    ax.set_title(study.study_name)
    return png_bytes(fig)
