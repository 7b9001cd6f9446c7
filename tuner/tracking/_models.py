"""Logging models to MLflow: the PyTorch flavour (signature and input example, requirements
given so MLflow infers nothing), a pyfunc model that scores raw table rows, the model registry.

A study logs one model (its final one), never one per trial: logging costs seconds. With a
writer process, that process logs it (this one does not import MLflow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.tracking._tracker import Tracker


def log_torch_model(tracker: Tracker, run_id: str, model: Any, input_example: Any) -> str:
    """Log a torch model (PyTorch flavour, signature inferred from the example); its URI. With
    a writer process, that process logs it (it has made the imports while the trials ran)."""
    return str(tracker.call_or_here("torch_model", _torch_model_here, run_id, model,
                                    input_example))


def log_raw_row_model(tracker: Tracker, run_id: str, scorer: Any, example: Any, rows: Any,
                      requirements: list[str], name: str = "scorer") -> str:
    """Log `scorer` (a callable: DataFrame of raw rows -> predictions) as a pyfunc model."""
    return str(tracker.call_or_here("raw_row_model", _raw_row_model_here, run_id, scorer,
                                    example, rows, requirements, name))


# Imported on use: where a writer process logs the models, this process imports no MLflow.
def _torch_model_here(tracking_uri: str, *args: Any) -> str:
    from tuner.tracking._model_io import log_torch_model_at

    return log_torch_model_at(tracking_uri, *args)


def _raw_row_model_here(tracking_uri: str, *args: Any) -> str:
    from tuner.tracking._model_io import log_raw_row_model_at

    return log_raw_row_model_at(tracking_uri, *args)


def register_model(tracker: Tracker, model_uri: str, name: str) -> str:
    """Register `model_uri` in the model registry of the tracker's store; the version."""
    from tuner.tracking._model_io import register_model_at

    return str(tracker.timed(register_model_at, tracker.tracking_uri, model_uri, name))
