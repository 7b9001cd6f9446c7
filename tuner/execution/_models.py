"""A trained MLP as the model a study (or `tuner evaluate`) logs: with the feature standardisation
inside, so it scores raw rows; for tables also a scorer of raw table rows (the fitted
preprocessing in front of the network)."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np
import torch

from tuner.data import Dataset
from tuner.tracking import Tracker, log_raw_row_model, log_torch_model
from tuner.training import RawRowScorer, ScoringModel


def scoring_model(model: torch.nn.Module, data: Dataset) -> ScoringModel:
    scaler, target = data.feature_scaler, data.target_scaler
    return ScoringModel(model, scaler.mean, scaler.scale, data.task,
                        float(target.mean[0]) if target else 0.0,
                        float(target.scale[0]) if target else 1.0)


def input_example(data: Dataset) -> Any:
    """A few rows as the torch model takes them: raw for numeric arrays, encoded for tables."""
    if data.scores_raw_rows:
        return np.asarray(data.example[:5], dtype=np.float32)
    return data.train.x[:5].numpy()


def log_models(tracker: Tracker, run_id: str, model: torch.nn.Module,
               data: Dataset) -> tuple[str, str | None]:
    """The PyTorch-flavour model, and for tables the raw-row scorer (pipeline + model).
    Returns (model URI, scorer URI or None)."""
    scoring = scoring_model(model, data)
    model_uri = log_torch_model(tracker, run_id, scoring, input_example(data))
    if data.scores_raw_rows or data.preprocessor is None:
        return model_uri, None
    scorer = RawRowScorer(data.preprocessor, scoring, data.classes)
    rows = data.example  # its column types make the signature; 5 of them, the example
    requirements = [f"{name}=={importlib.metadata.version(name)}"
                    for name in ("torch", "scikit-learn", "pandas", "numpy")]
    requirements[0] = requirements[0].split("+")[0]
    return model_uri, log_raw_row_model(tracker, run_id, scorer, rows.iloc[:5], rows,
                                        requirements)


def data_metrics(data: Dataset) -> dict[str, float]:
    """What the data report says (rows, missing values, oversampling) as `data_*` metrics."""
    return {f"data_{key}": float(value) for key, value in data.report.items()}
