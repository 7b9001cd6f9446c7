"""The tracker: one MLflow experiment, one parent run per study, one nested child run per trial.

One parent run per study, one nested child run per trial. The training loop never calls MLflow:
a `TrialRun` receives its per-epoch events and buffers them, so a trial costs a handful of MLflow
calls (start, params, one batch of metrics, end) instead of one call per metric per epoch.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tuner._stores import creation_lock, driver_url, scheme_of, sqlite_path
from tuner.errors import redact, require_extra
from tuner.tracking._writer import RunRef as _RunRef
from tuner.tracking._writer import Writer as _Writer

BATCH_LIMIT = 1000  # MLflow's limit of metrics per log_batch call
_FLUSH_EVERY_S = 10.0  # long trials still show live curves in the UI
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED",
              "FAILED": "FAILED", "KILLED": "KILLED", "INTERRUPTED": "KILLED"}



def store_uri(tracking_uri: str | None) -> str:
    """The tracking URI as MLflow gets it: None is MLFLOW_TRACKING_URI or MLflow's default; a
    PostgreSQL database needs the postgres extra, and a bare `postgresql://` gets the driver that
    is installed (SQLAlchemy 2.1 would assume psycopg 3)."""
    uri = tracking_uri or str(mlflow.get_tracking_uri())
    if scheme_of(uri) in ("postgresql", "postgres"):
        require_extra("postgres", f"the tracking URI {uri}")
    return driver_url(uri)


def client_for(tracking_uri: str | None) -> MlflowClient:
    """An MLflow client on `tracking_uri` (None: MLFLOW_TRACKING_URI or MLflow's default), with
    MLflow's chatter kept off the user's terminal."""
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # With a tracking server, MLflow prints each ended run's URL on stdout (and fetches the run
    # to do so): that would break `--json` and cost a request per trial.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    uri = store_uri(tracking_uri)
    path = sqlite_path(uri)
    if path is None or uri in _OPENED:
        return MlflowClient(uri)
    # Opening the store creates (or migrates) its tables; two processes doing that at once
    # break it (see tuner._stores), so the first opening happens under the folder's lock.
    with creation_lock(path):
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)
    _OPENED.add(uri)
    return client


_OPENED: set[str] = set()  # SQLite stores this process has opened (created) already


class Tracker:
    """Writes a study and its trials to one MLflow experiment; times its own calls.

    Trial runs are written asynchronously by one background thread; study-level calls (and
    anything that returns a value) wait for that thread first. `close()` (or leaving a `with`
    block) writes what is queued and ends the thread.
    """

    def __init__(self, tracking_uri: str | None, experiment: str, asynchronous: bool = True):
        self.client = client_for(tracking_uri)
        self.tracking_uri = store_uri(tracking_uri)
        self.asynchronous = asynchronous
        self._writer = _Writer()
        self.seconds = 0.0  # time the caller spent in (or waiting for) MLflow calls
        self.calls = 0
        self.experiment_id = self.timed(self._experiment, experiment)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Write what is queued and stop the background thread (a later call starts it again)."""
        start = time.perf_counter()
        try:
            self._writer.close()
        finally:
            self.seconds += time.perf_counter() - start

    @property
    def background_seconds(self) -> float:
        return self._writer.seconds

    def timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            self._writer.drain()
            return fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        if not self.asynchronous:
            self.timed(fn, *args, **kwargs)
            return
        start = time.perf_counter()
        self._writer.submit(fn, *args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1

    def flush(self) -> None:
        """Wait for every queued call (the end of a study, before reading anything back)."""
        start = time.perf_counter()
        try:
            self._writer.drain()
        finally:
            self.seconds += time.perf_counter() - start

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
                run = self.timed(self.client.get_run, resume_run_id)
            except MlflowException:
                run = None
            if run is not None and run.info.lifecycle_stage != "deleted":
                self.timed(self.client.update_run, resume_run_id, status="RUNNING")
                self.timed(self.client.set_tag, resume_run_id, "resumed", "true")
                return resume_run_id
        nested = {PARENT_RUN_TAG: parent_run_id} if parent_run_id else {}
        run = self.timed(self.client.create_run, self.experiment_id,
                         tags={**tags, **nested, "tuner.role": "study"}, run_name=name)
        run_id = str(run.info.run_id)
        self.timed(self.client.log_batch, run_id,
                   params=[Param(k, text(v)) for k, v in params.items()])
        return run_id

    def start_trial(self, parent_run_id: str, study_name: str, number: int,
                    params: Mapping[str, Any], tags: Mapping[str, str]) -> TrialRun:
        ref = _RunRef()
        run_tags = {PARENT_RUN_TAG: parent_run_id, "trial_number": str(number),
                    "tuner.role": "trial", "study": study_name, **tags}
        run_params = [Param(k, text(v)) for k, v in params.items()]

        def create() -> None:
            run = self.client.create_run(self.experiment_id, run_name=f"{study_name}-trial-{number}",
                                         tags=run_tags)
            ref.id = str(run.info.run_id)
            self.client.log_batch(ref.id, params=run_params)

        self.submit(create)
        return TrialRun(self, ref)

    def end_run(self, run_id: str, status: str) -> None:
        """End a run (after everything queued for it is written)."""
        self.timed(self.client.set_terminated, run_id, status=RUN_STATUS.get(status, status))

    def log_summary(self, run_id: str, metrics: Mapping[str, float],
                    tags: Mapping[str, str] = {}, step: int = 0) -> None:
        now = int(time.time() * 1000)
        self.timed(self.client.log_batch, run_id,
                   metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                   tags=[RunTag(k, text(v)) for k, v in tags.items()])

    def run_data(self, run_id: str) -> tuple[dict[str, str], dict[str, float]]:
        """A run's tags and latest metrics."""
        run = self.timed(self.client.get_run, run_id)
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
            self.timed(self.client.log_artifacts, run_id, tmp, folder)

    def start_run(self, name: str, tags: Mapping[str, str], params: Mapping[str, Any],
                  parent_run_id: str | None = None) -> str:
        """A plain run (a final model's), nested under `parent_run_id` when given."""
        nested = {PARENT_RUN_TAG: parent_run_id} if parent_run_id else {}
        run = self.timed(self.client.create_run, self.experiment_id, run_name=name,
                         tags={**tags, **nested})
        run_id = str(run.info.run_id)
        if params:
            self.timed(self.client.log_batch, run_id,
                       params=[Param(k, text(v)) for k, v in params.items()])
        return run_id

    def experiment_url(self) -> str:
        return f"{redact(self.tracking_uri)} (experiment id {self.experiment_id})"


class TrialRun:
    """Buffers one trial's per-epoch metrics and writes them in batches."""

    def __init__(self, tracker: Tracker, ref: _RunRef):
        self.tracker = tracker
        self._ref = ref
        self._pending: list[Metric] = []
        self._last_flush = time.monotonic()

    @property
    def run_id(self) -> str:
        self.tracker.flush()
        assert self._ref.id is not None, "the run was not created"
        return self._ref.id

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, epoch) for k, v in metrics.items())
        if time.monotonic() - self._last_flush > _FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            self.tracker.submit(self._write, pending, [], None)
        self._last_flush = time.monotonic()

    def finish(self, state: str, tags: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Flush, record the outcome, and end the run with the status matching the trial."""
        now = int(time.time() * 1000)
        pending, self._pending = self._pending, []
        pending.extend(Metric(k, float(v), now, 0) for k, v in metrics.items())
        run_tags = [RunTag("state", state)] + [RunTag(k, text(v)) for k, v in tags.items()]
        self.tracker.submit(self._write, pending, run_tags, RUN_STATUS.get(state, state))

    def _write(self, metrics: list[Metric], tags: list[RunTag], status: str | None) -> None:
        client, run_id = self.tracker.client, self._ref.id
        if run_id is None:  # its creation failed; that error is already recorded
            return
        for i in range(0, max(len(metrics), 1), BATCH_LIMIT):
            chunk = metrics[i:i + BATCH_LIMIT]
            last = i + BATCH_LIMIT >= len(metrics)
            if chunk or (last and tags):
                client.log_batch(run_id, metrics=chunk, tags=tags if last else [])
        if status is not None:
            client.set_terminated(run_id, status=status)


def text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return redact(text)[:6000]


