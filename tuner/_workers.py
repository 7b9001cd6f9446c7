"""Several worker processes on one study: `tuner run --workers N` and `tuner worker`.

Workers are processes (spawned: no forked torch or database state), each with its share of the
cores for torch. They coordinate only through the study's storage; the parent process runs no
trials: it shows the progress of all workers by polling the storage, reaps trials whose worker
died, passes Ctrl-C / SIGTERM on, and finishes the study when every worker is done.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from tuner._errors import TunerError
from tuner._heartbeat import reap_stale
from tuner._loop import show, stop_on_signals, study_done, work
from tuner._progress import StudyProgress
from tuner._spec import PrunerSpec, Space
from tuner._storage import check_parallel, open_storage, redact, shared_url
from tuner._study import (
    ATTR_PRUNER,
    TRIAL_INTERRUPTED,
    TRIAL_PARAMS,
    TRIAL_REASON,
    TRIAL_SEED,
    TRIAL_SURPLUS,
)

if TYPE_CHECKING:
    from tuner._objective import TrialOutcome
    from tuner._runner import RunOptions, _Session

_POLL_S = 0.5


@dataclass(frozen=True)
class Job:
    """What a worker process needs to join a study; picklable (spawned processes, Dask)."""

    space_text: str
    space_file: str
    storage: str = field(repr=False)  # as other processes see it; may hold a password
    study: str
    strategy: str
    seed: int
    pruner: str
    target: int
    threads: int | None  # None: this host's cores divided by its Dask slots
    heartbeat_timeout: float
    storage_retry_s: float
    tracking: bool
    tracking_uri: str | None = field(repr=False)  # None: MLflow's default
    experiment_id: str | None
    parent_run_id: str | None


def threads_per_worker(threads: int | None, workers: int) -> tuple[int, str | None]:
    """Torch threads for each of `workers` processes, so that together they fit the cores."""
    cores = os.cpu_count() or 1
    share = max(1, cores // workers)
    if threads is None:
        return share, (f"{workers} workers on {cores} cores: 1 torch thread each"
                       if workers > cores else None)
    if workers > 1 and threads * workers > cores:
        return share, (f"--threads {threads} x {workers} workers exceeds {cores} cores: "
                       f"{share} torch thread(s) per worker")
    return threads, None


def check_scaling(options: RunOptions) -> tuple[int, list[str]]:
    """Refuse bad scale-out options before anything is written; torch threads for this process
    (or each worker) and a note if they were lowered."""
    if options.workers < 1:
        raise TunerError(f"--workers must be >= 1, got {options.workers}")
    if options.heartbeat_timeout < 1:  # heartbeats come every timeout/6 s, at least 0.2 s apart
        raise TunerError(f"--heartbeat-timeout must be >= 1 s, got {options.heartbeat_timeout}")
    if options.workers > 1 or options.dask is not None:
        check_parallel(options.storage,
                       "--dask" if options.dask else f"--workers {options.workers}")
    threads, note = threads_per_worker(options.threads, options.workers)
    return threads, [note] if note and options.workers > 1 else []


def pruner_spec_for(space: Space, name: str | None) -> PrunerSpec:
    spec = space.study.pruner
    if name is None or name == spec.name:
        return spec
    return PrunerSpec(name, spec.startup_trials, spec.warmup_epochs, spec.min_resource,
                      spec.reduction_factor)


def run_elsewhere(session: _Session, options: RunOptions, target: int, threads: int,
                  stop: threading.Event, progress: StudyProgress) -> list[str]:
    """`tuner run --workers N` / `--dask`: the trials run in other processes; returns notes."""
    reap_stale(session.handle, session.heartbeat_timeout, session.end_lost_run)
    if study_done(session.handle, session.strategy == "grid", target):
        return []  # a finished study: no worker to start
    tracker = session.tracker
    tracking_uri = None if tracker is None else (
        shared_url(tracker.tracking_uri) if tracker.tracking_uri.startswith("sqlite:///")
        else tracker.tracking_uri)
    job = Job(session.space.text, session.space.file, shared_url(options.storage),
              session.study.study_name, session.strategy, session.seed,
              str(session.study.user_attrs.get(ATTR_PRUNER, "none")), target,
              None if options.dask else threads, options.heartbeat_timeout,
              options.storage_retry_s, tracker is not None, tracking_uri,
              tracker.experiment_id if tracker else None, session.parent)
    if options.dask is not None:
        from tuner._dask import run_on_dask

        return run_on_dask(session, job, options.dask, options.workers, stop, progress,
                           options.on_trial)
    return run_parallel(session, job, options.workers, stop, progress, options.on_trial)


def open_job(job: Job, torch_threads: int | None = None) -> _Session:
    """The worker side: this process's session on the job's study (no new study, no parent run)."""
    import optuna
    import torch

    from tuner._data import load_dataset
    from tuner._runner import _Session
    from tuner._sampling import seeded_sampler
    from tuner._spec import parse_space
    from tuner._strategies import make_pruner
    from tuner._study import StudyHandle

    torch.set_num_threads(torch_threads or job.threads or max(1, os.cpu_count() or 1))
    space = parse_space(job.space_text, file=job.space_file)
    data = load_dataset(space.data)
    storage = open_storage(job.storage, job.storage_retry_s)
    pruner = pruner_spec_for(space, job.pruner)
    study = optuna.load_study(study_name=job.study, storage=storage,
                              sampler=seeded_sampler(job.strategy, job.seed),
                              pruner=make_pruner(pruner, space.training.max_epochs))
    handle = StudyHandle(study, storage.get_study_id_from_name(job.study), storage, False)
    tracker = None
    if job.tracking and job.experiment_id and job.parent_run_id:
        from tuner._tracking import join_tracker

        tracker = join_tracker(job.tracking_uri, job.experiment_id, job.parent_run_id)
    session = _Session(space, handle, data, job.seed, job.strategy, pruner.name != "none",
                       tracker, heartbeat_timeout=job.heartbeat_timeout)
    session.parent = job.parent_run_id if tracker is not None else None
    return session


def stats_of(session: _Session) -> dict[str, float]:
    """What a worker reports back; its MLflow writes are all done by then."""
    if session.tracker is not None:
        session.tracker.flush()
    storage = session.handle.storage
    return {"ran": session.ran, "trials_s": session.trial_seconds,
            "tracking_s": session.tracking_trial_seconds,
            "storage_s": float(getattr(storage, "seconds", 0.0)) - session.storage_base}


def _worker_main(job: Job, index: int, results: Any, ready: Any) -> None:
    """A spawned worker process: run trials until the budget is used up or a signal stops it."""
    os.setpgrp()  # Ctrl-C in a terminal reaches the parent only; it passes each signal on once
    _quiet()
    stop = threading.Event()
    session: _Session | None = None
    code = 0
    try:
        with stop_on_signals(stop, None):
            try:
                session = open_job(job)
            except BaseException:
                ready.abort()
                raise
            # Start together: imports take seconds, a trial may take less, and a worker that
            # starts late would find the budget used up.
            with contextlib.suppress(threading.BrokenBarrierError):
                ready.wait(timeout=300)
            work(session, job.target, stop)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:
        print(f"tuner: worker {index} failed: {type(exc).__name__}: "
              f"{redact(str(exc)).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        code = 1
    if session is not None:
        try:
            if code:
                session.abort(None, "KILLED" if code == 130 else "FAILED")
            results.put({"index": index, **stats_of(session)})
        except Exception as exc:  # MLflow unreachable at the very end: the study is recorded
            print(f"tuner: worker {index}: {type(exc).__name__}: "
                  f"{redact(str(exc)).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
    results.close()
    results.join_thread()  # the queue's feeder thread must deliver before os._exit
    sys.stdout.flush()
    os._exit(code or (130 if stop.is_set() else 0))  # no atexit work: torch pools, queues


def _quiet() -> None:
    import logging
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def run_parallel(session: _Session, job: Job, workers: int, stop: threading.Event,
                 progress: StudyProgress,
                 on_trial: Callable[[TrialOutcome], None] | None) -> list[str]:
    """Run `workers` processes on the job's study and watch them; returns notes for the user."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    ready = ctx.Barrier(workers)
    procs = [ctx.Process(target=_worker_main, args=(job, i, results, ready),
                         name=f"tuner-worker-{i}", daemon=False) for i in range(workers)]
    for proc in procs:
        proc.start()

    def forward() -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    stats: list[dict[str, Any]] = []
    watcher = StudyWatch(session, progress, on_trial)
    try:
        with stop_on_signals(stop, progress, forward):
            while any(p.is_alive() for p in procs):
                watcher.poll()
                _drain(results, stats)
                time.sleep(_POLL_S)
            watcher.poll()
    except BaseException:
        forward()  # a second Ctrl-C (or our own failure): the workers abort too
        for proc in procs:
            proc.join(timeout=60)
        raise
    for proc in procs:
        proc.join()
    _drain(results, stats)
    add_stats(session, stats)
    notes = [f"{workers} worker processes, {job.threads} torch thread(s) each"]
    for i, proc in enumerate(procs):
        code = proc.exitcode
        if code not in (0, 130):
            died = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 \
                else f"exit code {code}"
            notes.append(f"worker {i} ended with {died}; its running trial is retried once "
                         "by a live worker or the next run")
    return notes


def add_stats(session: _Session, stats: list[dict[str, Any]]) -> None:
    """Count the workers' trial, MLflow and storage time in this session's result."""
    for item in stats:
        session.trial_seconds += item.get("trials_s", 0.0)
        session.tracking_trial_seconds += item.get("tracking_s", 0.0)
        session.worker_storage_s += item.get("storage_s", 0.0)


def _drain(results: Any, into: list[dict[str, Any]]) -> None:
    import queue

    while True:
        try:
            into.append(results.get_nowait())
        except (queue.Empty, OSError, ValueError):
            return


class StudyWatch:
    """The parent's view of a study that other processes work on: each `poll` reaps the trials
    of dead workers, reports newly finished trials to `on_trial`, and updates the progress."""

    def __init__(self, session: _Session, progress: StudyProgress,
                 on_trial: Callable[[TrialOutcome], None] | None):
        self.session = session
        self.progress = progress
        self.on_trial = on_trial
        self.seen = {t.number for t in session.study.get_trials(deepcopy=False)
                     if t.state.is_finished()}

    def poll(self) -> None:
        session = self.session
        reap_stale(session.handle, session.heartbeat_timeout, session.end_lost_run)
        for trial in session.study.get_trials(deepcopy=False):
            if trial.state.is_finished() and trial.number not in self.seen:
                self.seen.add(trial.number)
                if self.on_trial is not None and not trial.user_attrs.get(TRIAL_SURPLUS):
                    self.on_trial(outcome_of(trial))
        show(session, self.progress)


def outcome_of(trial: FrozenTrial) -> TrialOutcome:
    """A finished trial as `on_trial` sees it, read back from the storage."""
    from tuner._objective import TrialOutcome

    state = trial.state.name
    if trial.state == TrialState.FAIL and trial.user_attrs.get(TRIAL_INTERRUPTED):
        state = "INTERRUPTED"
    return TrialOutcome(trial.number, state, dict(trial.user_attrs.get(TRIAL_PARAMS, trial.params)),
                        int(trial.user_attrs.get(TRIAL_SEED, 0)), value=trial.value,
                        reason=str(trial.user_attrs.get(TRIAL_REASON, "")))


def join_study(storage_url: str, study_name: str, *, trials: int | None, workers: int,
               threads: int | None, tracking_uri: str | None, tracking: bool,
               heartbeat_timeout: float, storage_retry_s: float, progress: bool) -> Any:
    """`tuner worker`: run trials of an existing study, from the space stored with it; the test
    evaluation and the parent run's summary stay with `tuner run`."""
    from tuner._spec import parse_space
    from tuner._storage import describe
    from tuner._study import (
        ATTR_EXPERIMENT,
        ATTR_PARENT_RUN,
        ATTR_PRUNER,
        ATTR_SEED,
        ATTR_SPACE_FILE,
        ATTR_SPACE_TEXT,
        ATTR_STRATEGY,
        ATTR_TRIALS,
        counted_trials,
    )

    started = time.perf_counter()
    if workers < 1:
        raise TunerError(f"--workers must be >= 1, got {workers}")
    if workers > 1:
        check_parallel(storage_url, f"--workers {workers}")
    storage = open_storage(storage_url, storage_retry_s)
    found = {s.study_name: s for s in storage.get_all_studies()}
    if study_name not in found:
        raise TunerError(f"no study {study_name!r} in {describe(storage_url)}; studies: "
                         f"{', '.join(sorted(found)) or 'none'}")
    attrs = found[study_name].user_attrs
    if ATTR_SPACE_TEXT not in attrs:
        raise TunerError(f"study {study_name!r} was not created by tuner (no stored space)")
    space = parse_space(attrs[ATTR_SPACE_TEXT], file=attrs.get(ATTR_SPACE_FILE, "<stored>"))
    threads, thread_note = threads_per_worker(threads, workers)
    experiment, parent = attrs.get(ATTR_EXPERIMENT), attrs.get(ATTR_PARENT_RUN)
    job = Job(space.text, space.file, shared_url(storage_url), study_name,
              str(attrs[ATTR_STRATEGY]), int(attrs[ATTR_SEED]),
              str(attrs.get(ATTR_PRUNER, space.study.pruner.name)),
              trials or int(attrs.get(ATTR_TRIALS, space.study.trials)), threads,
              heartbeat_timeout, storage_retry_s, tracking and bool(experiment and parent),
              tracking_uri, experiment, parent)
    session = open_job(job)
    notes = [thread_note] if thread_note else []
    if tracking and session.tracker is None:
        notes.append("the study has no MLflow parent run: trials are not tracked")
    bar = StudyProgress(study_name, job.target, counted_trials(session.study), enabled=progress)
    stop = threading.Event()
    try:
        if workers > 1:
            with bar:
                notes += run_parallel(session, job, workers, stop, bar, None)
        else:
            with stop_on_signals(stop, bar), bar:
                work(session, job.target, stop, progress=bar)
    except BaseException as exc:
        session.abort(None, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    stats_of(session)  # waits for the MLflow writes
    return session.result(started, stop.is_set(), describe(storage_url), {}, notes)
