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
    positive = y[:, None] == np.asarray(columns)[None, :]
    n_pos = positive.sum(axis=0)
    n_neg = n - n_pos
    both = (n_pos > 0) & (n_neg > 0)
    if not both.any():
        return float("nan")
    rank_sums = np.where(positive, ranks, 0.0).sum(axis=0)[both]
    n_pos, n_neg = n_pos[both], n_neg[both]
    return float(np.mean((rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)))


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
    second). All columns at once, each sorted as a contiguous row (the order among equal values
    does not matter: they share a rank): a run of equal values at sorted positions s..e ranks
    (s + e) / 2 + 1."""
    rows = np.ascontiguousarray(values.T)
    n = rows.shape[1]
    order = np.argsort(rows, axis=1)
    ordered = np.take_along_axis(rows, order, axis=1)
    position = np.arange(n)
    starts = np.ones(rows.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(rows.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, n)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty(rows.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=1)
    ranks[np.isnan(rows).any(axis=1)] = np.nan
    return ranks.T
