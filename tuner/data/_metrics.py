"""Computing the validation metrics (their names and directions: `tuner.space.METRICS`).

They are computed on every validation pass, every epoch, so they are plain numpy: one confusion
matrix gives accuracy, balanced accuracy, precision, recall and F1; one rank pass gives ROC AUC.
Averages follow scikit-learn (its implementations are the reference the tests compare against):
macro and weighted averages run over the classes present in the labels or the predictions,
balanced accuracy over the classes present in the labels, precision of a never-predicted class
is 0.
"""

from __future__ import annotations

import numpy as np

# scikit-learn clips probabilities to [eps, 1 - eps] for the log loss: one confident mistake
# costs at most -log(eps), about 36.
_EPS = float(np.finfo(np.float64).eps)
_LOG_EPS, _LOG_1M_EPS = float(np.log(_EPS)), float(np.log1p(-_EPS))


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    flat = y.astype(np.int64) * n_classes + pred.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def classification_metrics(y: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Every classification metric from class ids and the model's logits (n, k)."""
    n, k = logits.shape
    if n == 0:
        return {}
    y = y.astype(np.int64)
    log_probs = log_softmax(logits)
    cm = confusion_matrix(y, logits.argmax(axis=1), k)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    seen = (support + predicted) > 0
    recall = _ratio(tp, support)
    precision = _ratio(tp, predicted)
    f1 = _ratio(2 * tp, support + predicted)
    weights = support / n
    out = {
        "accuracy": float(tp.sum() / n),
        "balanced_accuracy": float(recall[support > 0].mean()),
        "precision_macro": float(precision[seen].mean()),
        "precision_weighted": float((precision * weights).sum()),
        "recall_macro": float(recall[seen].mean()),
        "recall_weighted": float((recall * weights).sum()),
        "f1_macro": float(f1[seen].mean()),
        "f1_weighted": float((f1 * weights).sum()),
        "roc_auc": roc_auc(y, np.exp(log_probs)),
        "log_loss": float(-np.clip(log_probs[np.arange(n), y], _LOG_EPS, _LOG_1M_EPS).mean()),
    }
    return out


def roc_auc(y: np.ndarray, probs: np.ndarray) -> float:
    """Binary: AUC of the second class's probability. More classes: the mean one-vs-rest AUC
    over classes that have both positive and negative rows (NaN if none has)."""
    n, k = probs.shape
    columns = [1] if k == 2 else list(range(k))
    ranks = average_ranks(probs[:, columns])  # ties get their average rank, as in Mann-Whitney
    aucs = []
    for j, c in enumerate(columns):
        positive = y == c
        n_pos = int(positive.sum())
        n_neg = n - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        aucs.append((ranks[positive, j].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else float("nan")


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    if y.size == 0:
        return {}
    error = pred - y
    total = float(np.sum((y - y.mean()) ** 2))
    residual = float(np.sum(error ** 2))
    # A constant target has no variance to explain: scikit-learn's convention then.
    r2 = 1.0 - residual / total if total > 0 else float(residual == 0)
    return {"rmse": float(np.sqrt(np.mean(error ** 2))), "mae": float(np.mean(np.abs(error))),
            "r2": r2}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Each column's ranks from 1, ties sharing their average rank, a column holding NaN all NaN:
    `scipy.stats.rankdata(values, axis=0)`, without importing SciPy's statistics (half a
    second)."""
    ranks = np.empty(values.shape, dtype=np.float64)
    n = values.shape[0]
    for j in range(values.shape[1]):
        column = values[:, j]
        if np.isnan(column).any():
            ranks[:, j] = np.nan
            continue
        order = np.argsort(column, kind="mergesort")
        ordered = column[order]
        starts = np.r_[True, ordered[1:] != ordered[:-1]]
        group = np.cumsum(starts)  # 1 for the smallest value, 2 for the next, ...
        bounds = np.r_[np.flatnonzero(starts), n]  # where each group starts, then the end
        ranks[order, j] = 0.5 * (bounds[group] + bounds[group - 1] + 1)
    return ranks
