"""PNG figures of a final model's test results (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot loads: files only, never a window
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def confusion_png(matrix: np.ndarray, classes: Sequence[str], title: str) -> bytes:
    """Counts per (true, predicted) class; the colour is the share of the true class's rows."""
    k = len(classes)
    size = min(4 + 0.45 * k, 14)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
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
    return _png(fig)


def residual_png(y: np.ndarray, pred: np.ndarray, title: str) -> bytes:
    """Residuals (true - predicted) against the prediction, and predicted against true."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
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
    return _png(fig)
