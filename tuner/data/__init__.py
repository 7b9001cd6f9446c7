"""The rows: reading a source, preprocessing fitted on training rows only, the fixed
train / validation / test split (`Dataset`), and the validation metrics computed every epoch.

`load_dataset(spec)` is cached per process, so every trial of a worker shares one copy; the test
split is never looked at while tuning. Bad data are a one-line `DataError`, raised before any
study or MLflow run exists.
"""

from tuner.data._dataset import Dataset, Split, final_dataset, load_dataset, reshuffled_folds
from tuner.data._metrics import (
    classification_metrics,
    confusion_matrix,
    log_softmax,
    regression_metrics,
    roc_auc,
)
from tuner.data._preprocess import Preprocessor, Scaler, Table, clean, fit_preprocessor
from tuner.data._sources import RawData, read_source

__all__ = [
    "Dataset", "Preprocessor", "RawData", "Scaler", "Split", "Table", "classification_metrics",
    "clean", "confusion_matrix", "final_dataset", "fit_preprocessor", "load_dataset",
    "log_softmax", "read_source", "regression_metrics", "reshuffled_folds", "roc_auc",
]
