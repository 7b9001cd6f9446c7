"""The tracker: one MLflow experiment, one parent run per study, one nested child run per trial.

One parent run per study, one nested child run per trial. The training loop never calls MLflow:
a `TrialRun` receives its per-epoch events and buffers them, so a trial costs a handful of MLflow
calls (start, params, one batch of metrics, end) instead of one call per metric per epoch.

What is done to the store is a function of `_client`; the tracker runs it here, or names it to
its writer process (`tuner run`'s; a comparison's), which then holds the study's MLflow client:
`tuner run`'s process imports no MLflow at all (about a second of its start).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from tuner.errors import redact
from tuner.tracking import _client
from tuner.tracking._client import (
    BATCH_LIMIT,
    PARENT_RUN_TAG,
    RUN_STATUS,
    client_for,
    create_run,
    experiment_named,
    store_uri,
    text,
    write_run,
)
from tuner.tracking._handover import HandOver
from tuner.tracking._pool import take as take_writer
from tuner.tracking._writer import ProcessWriter, WriterLost
from tuner.tracking._writer import RunRef as _RunRef
from tuner.tracking._writer import Writer as _Writer

__all__ = ["BATCH_LIMIT", "PARENT_RUN_TAG", "RUN_STATUS", "Tracker", "TrialRun", "client_for",
           "text"]

_log = logging.getLogger("tuner")
_FLUSH_EVERY_S = 10.0  # long trials still show live curves in the UI


class Tracker:
    """Writes a study and its trials to one MLflow experiment; times its own calls.

    Trial runs are written asynchronously: by a writer process (`process=True`: the one
    `tuner run` prestarted, or a comparison's shared one, borrowed; the store's Python work then
    holds another interpreter's lock, not the training's; every other call and the models go
    there too), else by one background thread, which hands the trial runs over to a writer
    process if enough of the study is left (`hand_over`). Study-level calls (and anything that
    returns a value) wait for the writer first.
    `close()` (or leaving a `with` block) writes what is queued and ends the writer (a borrowed
    one is left running for the next study).
    """

    def __init__(self, tracking_uri: str | None, experiment: str, asynchronous: bool = True,
                 process: bool = False, warm_up: bool = True, hand_over: int | None = None):
        """`hand_over` (with a writer thread): the study's budget of trials, so that a study
        with enough left hands its trial runs over to a writer process (`_handover`)."""
        self.asynchronous = asynchronous
        self._writer = _Writer()
        self.seconds = 0.0  # time the caller spent in (or waiting for) MLflow calls
        self.calls = 0
        self.remote: ProcessWriter | None = None
        self._hand_over: HandOver | None = None
        self._sent: set[ProcessWriter] = set()  # writer processes sent something since a drain
        self.writer_lost = False  # its writer process ended unexpectedly (`_lose_writer`)
        self._losing = threading.Lock()
        self._owns_remote = False
        self._remote_base = 0.0  # what a borrowed writer had written before this study
        if process and asynchronous:
            remote, self._owns_remote = take_writer(tracking_uri, experiment, warm_up)
            self._remote_base = remote.seconds
            self.tracking_uri, self.experiment_id = self.timed(remote.open, experiment)
            self.remote = remote
            self.client: Any = _RemoteClient(remote)
        else:
            self.client = client_for(tracking_uri)
            self.tracking_uri = store_uri(tracking_uri)
            self.experiment_id = self.timed(experiment_named, self.client, experiment)
            if hand_over and asynchronous:  # the store as resolved here (`mlflow.set_...`)
                self._hand_over = HandOver(self.tracking_uri, experiment, hand_over)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Write what is queued and stop the background thread (a later call starts it again)."""
        start = time.perf_counter()
        try:
            self._writer.close()
            self._sent.clear()  # closing a writer process writes what it was sent
            if self._hand_over is not None:
                self._hand_over.close()
            if self.remote is not None:
                remote, self.remote = self.remote, None
                try:
                    if self._owns_remote:
                        remote.close()
                    else:  # a comparison's shared writer: what this study sent is written
                        remote.drain()
                finally:
                    self._background_base = remote.seconds - self._remote_base
            else:
                _client.settle(self.client, self.tracking_uri)
        finally:
            self.seconds += time.perf_counter() - start

    @property
    def background_seconds(self) -> float:
        """Time spent writing in the background (the thread, the writer process)."""
        remote = self.remote.seconds - self._remote_base if self.remote is not None else \
            getattr(self, "_background_base", 0.0)
        handed = self._hand_over.seconds if self._hand_over is not None else 0.0
        return self._writer.seconds + remote + handed

    @property
    def logs_models_elsewhere(self) -> bool:
        """Whether models are logged by the writer process: this process only waits for the
        answer (and may do other work meanwhile, on another thread)."""
        return self.remote is not None

    def _drain(self) -> None:
        self._writer.drain()
        sent, self._sent = self._sent, set()
        for writer in sent:
            writer.drain()

    def timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            self._drain()
            return fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def store(self, name: str, *args: Any) -> Any:
        """`_client.<name>(client, *args)`, in the writer process where there is one. If that
        process has ended (killed), here: so that the study's runs can still be ended."""
        return self._there_or_here(lambda remote: remote.store(name, *args),
                                   lambda: getattr(_client, name)(self.client, *args))

    def call_or_here(self, name: str, here: Any, *args: Any) -> Any:
        """The writer process's function `name` (model logging: `_child._CALLS`) run there, or
        `here(tracking_uri, *args)` in this process: without a writer process, or once it has
        ended."""
        return self._there_or_here(lambda remote: remote.call(name, *args),
                                   lambda: here(self.tracking_uri, *args))

    def _there_or_here(self, there: Any, here: Any) -> Any:
        remote = self.remote
        if remote is not None:
            try:
                return self.timed(there, remote)
            except WriterLost:
                self._lose_writer()
        return self.timed(here)

    def _lose_writer(self) -> None:
        """The writer process has ended: this process writes from now on (a thread), with a
        client of its own. What the process was sent and had not written is lost, said once."""
        with self._losing:  # the model's logging thread and the study's may both find out
            if self.writer_lost:
                return
            self.client = client_for(self.tracking_uri)
            remote, self.remote = self.remote, None
            self._sent.clear()
            if remote is not None and self._owns_remote:
                remote.abandon()
            self.writer_lost = True
        _log.warning("the MLflow writer process ended unexpectedly; this process writes the "
                     "rest, and the trial runs it had open end FAILED")

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
            self._drain()
        finally:
            self.seconds += time.perf_counter() - start

    def start_study(self, name: str, tags: Mapping[str, str], params: Mapping[str, Any],
                    resume_run_id: str | None, parent_run_id: str | None = None) -> str:
        """The study's parent run: reopened when resuming, else created."""
        return str(self.store("open_parent_run", self.experiment_id, name, dict(tags),
                              dict(params), resume_run_id, parent_run_id))

    def end_orphaned_runs(self, parent_run_id: str, running: list[int]) -> list[str]:
        """End the trial runs of a resumed study left RUNNING by a process that ended (see
        `_client.end_orphaned_runs`); their ids."""
        return list(self.store("end_orphaned_runs", self.experiment_id, parent_run_id, running))

    def start_trial(self, parent_run_id: str, study_name: str, number: int,
                    params: Mapping[str, Any], tags: Mapping[str, str]) -> TrialRun:
        """A trial's run, created now; its params go with its first batch of metrics (three
        calls to the store for a short trial: create, one batch, end)."""
        run_tags = {PARENT_RUN_TAG: parent_run_id, "trial_number": str(number),
                    "tuner.role": "trial", "study": study_name, **tags}
        name, start_ms = f"{study_name}-trial-{number}", int(time.time() * 1000)
        run_params = [(k, text(v)) for k, v in params.items()]
        process = self.remote if self.remote is not None else \
            self._hand_over.ready_writer() if self._hand_over is not None else None
        if process is not None:  # the run is written there, to its end
            begin = time.perf_counter()
            written_there = _ProcessRun(process, process.create(name, run_tags, start_ms))
            self._sent.add(process)
            self.seconds += time.perf_counter() - begin
            self.calls += 1
            return TrialRun(self, written_there, run_params)
        ref = _RunRef()

        def create() -> None:
            ref.id = create_run(self.client, self.experiment_id, name, run_tags, start_ms)

        self.submit(create)
        return TrialRun(self, ref, run_params)

    def write_trial(self, ref: Any, metrics: list[tuple[str, float, int, int]],
                    tags: list[tuple[str, str]], status: str | None,
                    params: list[tuple[str, str]]) -> None:
        """Queue a trial run's params (its first write), metrics, tags and (with `status`) its
        end."""
        if isinstance(ref, _ProcessRun):
            begin = time.perf_counter()
            ref.writer.write(ref.number, metrics, tags, status, params)
            self._sent.add(ref.writer)
            self.seconds += time.perf_counter() - begin
            self.calls += 1
            return

        def write() -> None:
            if ref.id is not None:  # else its creation failed; that error is already recorded
                write_run(self.client, ref.id, metrics, tags, status, params)

        self.submit(write)

    def trial_run_id(self, ref: Any) -> str | None:
        """The id of a run this tracker started; None if its creation failed, or if the writer
        process that knew it has ended."""
        try:
            self.flush()
            if isinstance(ref, _ProcessRun):
                return ref.writer.run_id(ref.number)
        except WriterLost:
            return None
        return None if ref.id is None else str(ref.id)

    def trial_run_id_of(self, study: str, number: int) -> str | None:
        """The id of the run of trial `number` of `study` in this experiment, wherever it was
        written from (this process, another worker, an earlier run of the study)."""
        run_id = self.store("trial_run", self.experiment_id, study, number)
        return None if run_id is None else str(run_id)

    def end_run(self, run_id: str, status: str) -> None:
        """End a run (after everything queued for it is written)."""
        self.store("end_run", run_id, status)

    def log_summary(self, run_id: str, metrics: Mapping[str, float],
                    tags: Mapping[str, str] = {}, step: int = 0) -> None:
        self.store("log_values", run_id, dict(metrics), dict(tags), {}, step)

    def run_data(self, run_id: str) -> tuple[dict[str, str], dict[str, float]]:
        """A run's tags and latest metrics."""
        tags, metrics = self.store("run_data", run_id)
        return tags, metrics

    def log_artifacts(self, run_id: str, files: Mapping[str, str | bytes],
                      folder: str | None = None) -> None:
        """Write each (file name -> content) pair as an artifact of the run."""
        if files:
            self.store("log_files", run_id, dict(files), folder)

    def start_run(self, name: str, tags: Mapping[str, str], params: Mapping[str, Any],
                  parent_run_id: str | None = None) -> str:
        """A plain run (a final model's), nested under `parent_run_id` when given."""
        return str(self.store("create_plain_run", self.experiment_id, name, dict(tags),
                              dict(params), parent_run_id))

    def experiment_url(self) -> str:
        return f"{redact(self.tracking_uri)} (experiment id {self.experiment_id})"


class _ProcessRun:
    """A trial run that a writer process writes (`tuner run`'s, or the hand-over's), by its
    number there."""

    __slots__ = ("number", "writer")

    def __init__(self, writer: ProcessWriter, number: int):
        self.writer, self.number = writer, number


class _RemoteClient:
    """The writer process's MLflow client, seen from the study's process: each method call is
    made there (what reads the store back, such as ending the run of a lost trial)."""

    def __init__(self, remote: ProcessWriter):
        self._remote = remote

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return functools.partial(self._remote.client_call, name)


class TrialRun:
    """Buffers one trial's per-epoch metrics and writes them in batches."""

    def __init__(self, tracker: Tracker, ref: Any, params: list[tuple[str, str]] | None = None):
        self.tracker = tracker
        self._ref = ref
        self._params = params or []  # written with the first batch
        self._pending: list[tuple[str, float, int, int]] = []
        self._last_flush = time.monotonic()

    @property
    def ref(self) -> Any:
        """How the tracker knows the run (`Tracker.trial_run_id`)."""
        return self._ref

    @property
    def run_id(self) -> str:
        run_id = self.tracker.trial_run_id(self._ref)
        assert run_id is not None, "the run was not created"
        return run_id

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        now = int(time.time() * 1000)
        self._pending.extend((k, float(v), now, epoch) for k, v in metrics.items())
        if time.monotonic() - self._last_flush > _FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            params, self._params = self._params, []
            self.tracker.write_trial(self._ref, pending, [], None, params)
        self._last_flush = time.monotonic()

    def finish(self, state: str, tags: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Flush, record the outcome, and end the run with the status matching the trial."""
        now = int(time.time() * 1000)
        pending, self._pending = self._pending, []
        pending.extend((k, float(v), now, 0) for k, v in metrics.items())
        run_tags = [("state", state)] + [(k, text(v)) for k, v in tags.items()]
        params, self._params = self._params, []
        self.tracker.write_trial(self._ref, pending, run_tags, RUN_STATUS.get(state, state),
                                 params)
