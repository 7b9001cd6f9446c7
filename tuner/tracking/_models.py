"""Logging models to MLflow: the PyTorch flavour (signature and input example, requirements
given so MLflow infers nothing), a pyfunc model that scores raw table rows, the model registry.

A study logs one model (its final one), never one per trial: logging costs seconds.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import mlflow

if TYPE_CHECKING:
    from tuner.tracking._tracker import Tracker


def log_torch_model(tracker: Tracker, run_id: str, model: Any, input_example: Any) -> str:
    """Log a torch model (PyTorch flavour, signature inferred from the example); its URI."""
    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    with torch.inference_mode():
        output = model(torch.as_tensor(input_example)).numpy()
    signature = infer_signature(input_example, output)
    with _active(tracker, run_id):
        info = tracker.timed(
            mlflow.pytorch.log_model, model, name="model", signature=signature,
            input_example=input_example, serialization_format="pt2",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
    return str(info.model_uri)


def log_raw_row_model(tracker: Tracker, run_id: str, scorer: Any, example: Any, rows: Any,
                      requirements: list[str], name: str = "scorer") -> str:
    """Log `scorer` (a callable: DataFrame of raw rows -> predictions) as a pyfunc model.
    The signature comes from `rows` (training rows); every input column is optional, since
    filling missing values is part of the model."""
    import mlflow.pyfunc
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # integer columns, type hints: known, handled here
        inferred = infer_signature(rows, scorer(rows))
        inputs = Schema([ColSpec(c.type, c.name, required=False)
                         for c in inferred.inputs.inputs])
        signature = ModelSignature(inputs, inferred.outputs)
        pyfunc_log.setLevel(logging.ERROR)  # the note on pickled python models
        try:
            with _active(tracker, run_id):
                info = tracker.timed(mlflow.pyfunc.log_model, name=name, python_model=scorer,
                                     signature=signature, input_example=example,
                                     pip_requirements=requirements)
        finally:
            pyfunc_log.setLevel(level)
    return str(info.model_uri)


def register_model(tracker: Tracker, model_uri: str, name: str) -> str:
    """Register `model_uri` in the model registry of the tracker's store; the version."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracker.tracking_uri)
    try:
        version = tracker.timed(mlflow.register_model, model_uri, name)
    finally:
        mlflow.set_tracking_uri(previous)
    return str(version.version)


@contextmanager
def _active(tracker: Tracker, run_id: str) -> Iterator[None]:
    # The fluent API needs an active run; the run's status is left to Tracker.end_run.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracker.tracking_uri)
    try:
        run = mlflow.start_run(run_id=run_id)
        try:
            yield
        finally:
            mlflow.end_run("RUNNING") if run else None
    finally:
        mlflow.set_tracking_uri(previous)
