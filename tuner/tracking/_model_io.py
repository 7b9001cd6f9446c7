"""Logging a model to a run of a store, given by URI: what the tracker's writer process runs (or
the tracker itself, without one). No fluent run is opened (`run_id=`), and the requirements are
given, so MLflow infers nothing; they are the installed versions, so MLflow's check of them is
skipped (`requirements_as_given`)."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import mlflow

from tuner.tracking._requirements import requirements_as_given


def log_torch_model_at(tracking_uri: str, run_id: str, model: Any, input_example: Any) -> str:
    """Log a torch model (PyTorch flavour, signature inferred from the example); its URI."""
    import mlflow.pytorch

    with _at(tracking_uri), requirements_as_given():
        # Made here, in the run's experiment: MLflow would put it in the process's current
        # experiment ("Default" in the writer process, the caller's own in a notebook).
        client = mlflow.MlflowClient(tracking_uri)
        logged = client.create_logged_model(client.get_run(run_id).info.experiment_id,
                                            name="model", source_run_id=run_id)
        # MLflow would load the logged model back and predict its example (a fifth of a
        # second at every study's end, for a model tuner built): tests/test_fast_paths.py
        # checks that what this logs loads and predicts.
        info = mlflow.pytorch.log_model(model, name="model", run_id=run_id,
                                        model_id=logged.model_id, validate_serving_input=False,
                                        **_torch_flavour(model, input_example))
    return str(info.model_uri)


def save_torch_model(path: str, model: Any, input_example: Any) -> None:
    """Save a torch model to a folder as `log_torch_model_at` logs it (the writer's warm-up)."""
    import mlflow.pytorch

    with requirements_as_given():
        mlflow.pytorch.save_model(model, path, **_torch_flavour(model, input_example))


def _torch_flavour(model: Any, input_example: Any) -> dict[str, Any]:
    """The PyTorch flavour's options: pt2 (torch.export; no pickle), the signature inferred
    from the example, the requirements given (MLflow infers nothing)."""
    import torch
    from mlflow.models import infer_signature

    with torch.inference_mode():
        output = model(torch.as_tensor(input_example)).numpy()
    return {"signature": infer_signature(input_example, output), "input_example": input_example,
            "serialization_format": "pt2",
            "pip_requirements": [f"torch=={torch.__version__.split('+')[0]}"]}


def log_raw_row_model_at(tracking_uri: str, run_id: str, scorer: Any, example: Any, rows: Any,
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
            with _at(tracking_uri), _in_run(run_id), requirements_as_given():
                info = mlflow.pyfunc.log_model(name=name, python_model=scorer,
                                               signature=signature, input_example=example,
                                               pip_requirements=requirements)
        finally:
            pyfunc_log.setLevel(level)
    return str(info.model_uri)


def register_model_at(tracking_uri: str, model_uri: str, name: str) -> str:
    """Register `model_uri` in the model registry of the store at `tracking_uri`; the
    version."""
    with _at(tracking_uri):
        return str(mlflow.register_model(model_uri, name).version)


@contextlib.contextmanager
def _in_run(run_id: str) -> Iterator[None]:
    """The run made active for a block (pyfunc's log_model takes no run_id). The run's status
    stays the tracker's to set."""
    mlflow.start_run(run_id=run_id)
    try:
        yield
    finally:
        mlflow.end_run("RUNNING")


class _at:
    """MLflow's global tracking URI set to `uri` for a block. `set_tracking_uri` also writes the
    URI to the environment (MLFLOW_TRACKING_URI) and fixes it in code; afterwards the caller's
    environment comes back as it was, and a URI the caller never set in code is not left fixed
    (a notebook's later change of MLFLOW_TRACKING_URI still counts)."""

    def __init__(self, uri: str):
        self.uri = uri

    def __enter__(self) -> None:
        self.previous = mlflow.get_tracking_uri()
        self.environment = os.environ.get(_URI_VARIABLE)
        mlflow.set_tracking_uri(self.uri)

    def __exit__(self, *exc: Any) -> None:
        # None: not fixed in code, resolved from the environment (MLflow's code takes None,
        # though its signature does not say so; tests/test_fast_paths.py pins the outcome).
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        self._restore_environment()
        if mlflow.get_tracking_uri() != self.previous:  # the caller had fixed it in code
            mlflow.set_tracking_uri(self.previous)
            self._restore_environment()

    def _restore_environment(self) -> None:
        if self.environment is None:
            os.environ.pop(_URI_VARIABLE, None)
        else:
            os.environ[_URI_VARIABLE] = self.environment


_URI_VARIABLE = "MLFLOW_TRACKING_URI"
