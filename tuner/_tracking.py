"""MLflow tracking: the only module that imports mlflow.

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
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tuner._storage import redact
from tuner._writer import RunRef as _RunRef
from tuner._writer import Writer as _Writer

_BATCH_LIMIT = 1000  # MLflow's limit of metrics per log_batch call
_FLUSH_EVERY_S = 10.0  # long trials still show live curves in the UI
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED",
              "FAILED": "FAILED", "KILLED": "KILLED", "INTERRUPTED": "KILLED"}

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("alembic").setLevel(logging.WARNING)
# With a tracking server, MLflow prints each ended run's URL on stdout (and fetches the run to do
# so): that would break `--json` and cost a request per trial.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


class Tracker:
    """Writes a study and its trials to one MLflow experiment; times its own calls.

    Trial runs are written asynchronously by one background thread; study-level calls (and
    anything that returns a value) wait for that thread first.
    """

    def __init__(self, tracking_uri: str | None, experiment: str, asynchronous: bool = True):
        self.tracking_uri = tracking_uri or mlflow.get_tracking_uri()
        self.client = MlflowClient(self.tracking_uri)
        self.asynchronous = asynchronous
        self._writer = _Writer()
        self.seconds = 0.0  # time the caller spent in (or waiting for) MLflow calls
        self.calls = 0
        self.experiment_id = self._call(self._experiment, experiment)

    @property
    def background_seconds(self) -> float:
        return self._writer.seconds

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            self._writer.drain()
            return fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def _submit(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        if not self.asynchronous:
            self._call(fn, *args, **kwargs)
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
        ref = _RunRef()
        run_tags = {PARENT_RUN_TAG: parent_run_id, "trial_number": str(number),
                    "tuner.role": "trial", "study": study_name, **tags}
        run_params = [Param(k, _text(v)) for k, v in params.items()]

        def create() -> None:
            run = self.client.create_run(self.experiment_id, run_name=f"{study_name}-trial-{number}",
                                         tags=run_tags)
            ref.id = str(run.info.run_id)
            self.client.log_batch(ref.id, params=run_params)

        self._submit(create)
        return TrialRun(self, ref)

    def end_run(self, run_id: str, status: str) -> None:
        """End a run (after everything queued for it is written)."""
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

    def start_run(self, name: str, tags: Mapping[str, str], params: Mapping[str, Any],
                  parent_run_id: str | None = None) -> str:
        """A plain run (a final model's), nested under `parent_run_id` when given."""
        nested = {PARENT_RUN_TAG: parent_run_id} if parent_run_id else {}
        run = self._call(self.client.create_run, self.experiment_id, run_name=name,
                         tags={**tags, **nested})
        run_id = str(run.info.run_id)
        if params:
            self._call(self.client.log_batch, run_id,
                       params=[Param(k, _text(v)) for k, v in params.items()])
        return run_id

    def log_raw_row_model(self, run_id: str, scorer: Any, example: Any, rows: Any,
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
                with self._active(run_id):
                    info = self._call(mlflow.pyfunc.log_model, name=name, python_model=scorer,
                                      signature=signature, input_example=example,
                                      pip_requirements=requirements)
            finally:
                pyfunc_log.setLevel(level)
        return str(info.model_uri)

    def register_model(self, model_uri: str, name: str) -> str:
        """Register `model_uri` in the model registry of this tracking store; the version."""
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            version = self._call(mlflow.register_model, model_uri, name)
        finally:
            mlflow.set_tracking_uri(previous)
        return str(version.version)

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
            self.tracker._submit(self._write, pending, [], None)
        self._last_flush = time.monotonic()

    def finish(self, state: str, tags: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Flush, record the outcome, and end the run with the status matching the trial."""
        now = int(time.time() * 1000)
        pending, self._pending = self._pending, []
        pending.extend(Metric(k, float(v), now, 0) for k, v in metrics.items())
        run_tags = [RunTag("state", state)] + [RunTag(k, _text(v)) for k, v in tags.items()]
        self.tracker._submit(self._write, pending, run_tags, RUN_STATUS.get(state, state))

    def _write(self, metrics: list[Metric], tags: list[RunTag], status: str | None) -> None:
        client, run_id = self.tracker.client, self._ref.id
        if run_id is None:  # its creation failed; that error is already recorded
            return
        for i in range(0, max(len(metrics), 1), _BATCH_LIMIT):
            chunk = metrics[i:i + _BATCH_LIMIT]
            last = i + _BATCH_LIMIT >= len(metrics)
            if chunk or (last and tags):
                client.log_batch(run_id, metrics=chunk, tags=tags if last else [])
        if status is not None:
            client.set_terminated(run_id, status=status)


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


def fail_trial_run(tracker: Tracker, study: str, number: int, run_id: str | None,
                   reason: str) -> str | None:
    """End the MLflow run of a trial whose worker died: FAILED with the reason, if still open."""
    if run_id is None:
        run_id = find_trial_run(tracker.tracking_uri, tracker.experiment_id, study, number)
    if run_id is None:
        return None
    run = tracker._call(tracker.client.get_run, run_id)
    if run.info.status != "RUNNING":
        return run_id
    tracker._call(tracker.client.log_batch, run_id, tags=[
        RunTag("state", "FAIL"), RunTag("fail_reason", _text(reason))])
    tracker.end_run(run_id, "FAILED")
    return run_id


def join_tracker(tracking_uri: str | None, experiment_id: str, parent_run_id: str) -> Tracker:
    """A tracker for a worker joining a study whose parent run already exists (maybe created on
    another host); the store must be the one the study logs to."""
    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    shown = redact(tracking_uri or mlflow.get_tracking_uri())
    try:
        experiment = client.get_experiment(experiment_id)
        client.get_run(parent_run_id)
    except MlflowException:
        from tuner._errors import TunerError

        raise TunerError(f"the study logs to MLflow experiment {experiment_id} (parent run "
                         f"{parent_run_id}), which is not in the tracking store {shown}: pass the "
                         "study's --tracking-uri, or --no-tracking") from None
    return Tracker(tracking_uri, experiment.name)


# Comparisons (`tuner compare`): one run over many study parent runs.
_COMPARISON = "tags.`tuner.role` = 'comparison' and tags.comparison = '{}'"


def default_tracking_uri() -> str:
    """Where `tuner run` logs without --tracking-uri: MLFLOW_TRACKING_URI or MLflow's default."""
    return str(mlflow.get_tracking_uri())


def check_comparison(tracking_uri: str | None, experiment: str, name: str,
                     params: Mapping[str, Any]) -> None:
    """Refuse to resume comparison `name` with other settings; reads, writes nothing."""
    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], _COMPARISON.format(name),
                              max_results=1) if found else []
    stored = runs[0].data.params if runs else {}
    changed = [f"{k}: {stored[k]} -> {_text(v)}" for k, v in params.items()
               if k in stored and stored[k] != _text(v)]
    if changed:
        from tuner._errors import TunerError

        raise TunerError(f"comparison {name!r} in experiment {experiment!r} was run with other "
                         f"settings ({'; '.join(changed)}): use the same flags to resume it, or "
                         "another --name")


def start_comparison(tracker: Tracker, name: str, tags: Mapping[str, str],
                     params: Mapping[str, Any]) -> str:
    """The comparison's run: reopened when the same comparison runs again, else created."""
    runs = tracker._call(tracker.client.search_runs, [tracker.experiment_id],
                         _COMPARISON.format(name), max_results=1)
    if runs:
        run_id = str(runs[0].info.run_id)
        tracker._call(tracker.client.update_run, run_id, status="RUNNING")
        tracker.log_summary(run_id, {}, tags)
        return run_id
    run = tracker._call(tracker.client.create_run, tracker.experiment_id, run_name=name,
                        tags={**tags, "tuner.role": "comparison", "comparison": name})
    run_id = str(run.info.run_id)
    tracker._call(tracker.client.log_batch, run_id,
                  params=[Param(k, _text(v)) for k, v in params.items()])
    return run_id


def run_status(tracker: Tracker, run_id: str) -> str | None:
    """FINISHED, RUNNING, KILLED, ...; None for a run that is missing or deleted."""
    try:
        run = tracker._call(tracker.client.get_run, run_id)
    except MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else str(run.info.status)


def trial_run_tags(tracker: Tracker, study: str) -> dict[int, dict[str, str]]:
    """Trial number -> tags of the latest MLflow run of that trial of `study`."""
    out: dict[int, dict[str, str]] = {}
    token = None
    while True:
        page = tracker._call(tracker.client.search_runs, [tracker.experiment_id],
                             f"tags.study = '{study}' and tags.`tuner.role` = 'trial'",
                             max_results=1000, order_by=["attributes.start_time ASC"],
                             page_token=token)
        for run in page:
            out[int(run.data.tags["trial_number"])] = dict(run.data.tags)
        token = page.token
        if not token:
            return out


def log_study_outcome(tracker: Tracker, run_id: str, metrics: Mapping[str, float | None],
                      best_so_far: list[tuple[int, float]]) -> None:
    """A study's standing in its comparison, and its best-so-far curve (step = trial), which
    the UI can chart per strategy; steps already logged are not logged again."""
    logged = {m.step for m in tracker._call(tracker.client.get_metric_history, run_id,
                                            "best_so_far")}
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
    batch += [Metric("best_so_far", float(v), now, int(s)) for s, v in best_so_far
              if int(s) not in logged]
    for i in range(0, len(batch), _BATCH_LIMIT):
        tracker._call(tracker.client.log_batch, run_id, metrics=batch[i:i + _BATCH_LIMIT])


def run_experiment(tracking_uri: str | None, run_id: str) -> str | None:
    """The name of the experiment that holds `run_id` in this store; None if it is not there."""
    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    try:
        run = client.get_run(run_id)
        return str(client.get_experiment(run.info.experiment_id).name)
    except MlflowException:
        return None


def runs_frame(tracking_uri: str | None, experiment: str) -> Any:
    """An experiment's runs as a pandas DataFrame (the Python API's `tuner.runs`)."""
    from tuner._errors import TunerError

    client = MlflowClient(tracking_uri or default_tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise TunerError(f"no MLflow experiment {experiment!r} in "
                         f"{redact(tracking_uri or default_tracking_uri())}")
    import pandas as pd

    rows = []
    for run in client.search_runs([found.experiment_id], max_results=5000):
        rows.append({"run_id": run.info.run_id, "run_name": run.info.run_name,
                     "status": run.info.status,
                     **{f"tags.{k}": v for k, v in run.data.tags.items()
                        if not k.startswith("mlflow.")},
                     **{f"params.{k}": v for k, v in run.data.params.items()},
                     **{f"metrics.{k}": v for k, v in run.data.metrics.items()}})
    return pd.DataFrame(rows)
