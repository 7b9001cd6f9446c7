"""MLflow tracking: the only module that imports mlflow.

One parent run per study, one nested child run per trial. The training loop never calls MLflow:
a `TrialRun` receives its per-epoch events and buffers them, so a trial costs a handful of MLflow
calls (start, params, one batch of metrics, end) instead of one call per metric per epoch.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tuner._storage import redact

_BATCH_LIMIT = 1000  # MLflow's limit of metrics per log_batch call
_FLUSH_EVERY_S = 10.0  # long trials still show live curves in the UI
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED",
              "FAILED": "FAILED", "KILLED": "KILLED", "INTERRUPTED": "KILLED"}

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)


class Tracker:
    """Writes a study and its trials to one MLflow experiment; times its own calls."""

    def __init__(self, tracking_uri: str | None, experiment: str):
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.client = MlflowClient(self.tracking_uri)
        self.seconds = 0.0
        self.calls = 0
        self.experiment_id = self._call(self._experiment, experiment)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except MlflowException:  # another worker created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def start_study(self, name: str, tags: Mapping[str, str], params: Mapping[str, Any],
                    resume_run_id: str | None, parent_run_id: str | None = None) -> str:
        """The study's parent run: reopened when resuming, else created."""
        if resume_run_id is not None:
            try:
                run = self._call(self.client.get_run, resume_run_id)
            except MlflowException:
                run = None
            if run is not None and run.info.lifecycle_stage != "deleted":
                self._call(self.client.update_run, resume_run_id, status="RUNNING")
                self._call(self.client.set_tag, resume_run_id, "resumed", "true")
                return resume_run_id
        nested = {PARENT_RUN_TAG: parent_run_id} if parent_run_id else {}
        run = self._call(self.client.create_run, self.experiment_id,
                         tags={**tags, **nested, "tuner.role": "study"}, run_name=name)
        run_id = str(run.info.run_id)
        self._call(self.client.log_batch, run_id,
                   params=[Param(k, _text(v)) for k, v in params.items()])
        return run_id

    def start_trial(self, parent_run_id: str, study_name: str, number: int,
                    params: Mapping[str, Any], tags: Mapping[str, str]) -> TrialRun:
        run = self._call(
            self.client.create_run, self.experiment_id, run_name=f"{study_name}-trial-{number}",
            tags={PARENT_RUN_TAG: parent_run_id, "trial_number": str(number),
                  "tuner.role": "trial", "study": study_name, **tags},
        )
        trial_run = TrialRun(self, str(run.info.run_id))
        self._call(self.client.log_batch, trial_run.run_id,
                   params=[Param(k, _text(v)) for k, v in params.items()])
        return trial_run

    def end_run(self, run_id: str, status: str) -> None:
        self._call(self.client.set_terminated, run_id, status=RUN_STATUS.get(status, status))

    def log_summary(self, run_id: str, metrics: Mapping[str, float],
                    tags: Mapping[str, str] = {}, step: int = 0) -> None:
        now = int(time.time() * 1000)
        self._call(self.client.log_batch, run_id,
                   metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                   tags=[RunTag(k, _text(v)) for k, v in tags.items()])

    def run_data(self, run_id: str) -> tuple[dict[str, str], dict[str, float]]:
        """A run's tags and latest metrics."""
        run = self._call(self.client.get_run, run_id)
        return dict(run.data.tags), dict(run.data.metrics)

    def log_artifacts(self, run_id: str, files: Mapping[str, str | bytes],
                      folder: str | None = None) -> None:
        """Write each (file name -> content) pair as an artifact of the run."""
        if not files:
            return
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in files.items():
                path = Path(tmp) / name
                if isinstance(content, bytes):
                    path.write_bytes(content)
                else:
                    path.write_text(content, encoding="utf-8")
            self._call(self.client.log_artifacts, run_id, tmp, folder)

    def log_model(self, run_id: str, model: Any, input_example: Any) -> str:
        """Log a torch model (PyTorch flavour, signature inferred from the example)."""
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        with torch.inference_mode():
            output = model(torch.as_tensor(input_example)).numpy()
        signature = infer_signature(input_example, output)
        with self._active(run_id):
            info = self._call(
                mlflow.pytorch.log_model, model, name="model", signature=signature,
                input_example=input_example, serialization_format="pt2",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
        return str(info.model_uri)

    @contextmanager
    def _active(self, run_id: str) -> Iterator[None]:
        # The fluent API needs an active run; the run's status is left to end_run.
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            run = mlflow.start_run(run_id=run_id)
            try:
                yield
            finally:
                mlflow.end_run("RUNNING") if run else None
        finally:
            mlflow.set_tracking_uri(previous)

    def experiment_url(self) -> str:
        return f"{redact(self.tracking_uri)} (experiment id {self.experiment_id})"


class TrialRun:
    """Buffers one trial's per-epoch metrics and writes them in batches."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.run_id = run_id
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, epoch) for k, v in metrics.items())
        if time.monotonic() - self._last_flush > _FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:_BATCH_LIMIT], self._pending[_BATCH_LIMIT:]
            self.tracker._call(self.tracker.client.log_batch, self.run_id, metrics=chunk)
        self._last_flush = time.monotonic()

    def finish(self, state: str, tags: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Flush, record the outcome, and end the run with the status matching the trial."""
        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, 0) for k, v in metrics.items())
        chunk, self._pending = self._pending[:_BATCH_LIMIT], self._pending[_BATCH_LIMIT:]
        self.flush()
        self.tracker._call(self.tracker.client.log_batch, self.run_id, metrics=chunk,
                           tags=[RunTag("state", state)] + [RunTag(k, _text(v))
                                                            for k, v in tags.items()])
        self.tracker.end_run(self.run_id, state)


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return redact(text)[:6000]


def find_trial_run(tracking_uri: str | None, experiment_id: str, study: str,
                   number: int) -> str | None:
    """The MLflow run id holding trial `number` of `study`, if it was tracked there."""
    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.study = '{study}' and tags.trial_number = '{number}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return str(runs[0].info.run_id) if runs else None
