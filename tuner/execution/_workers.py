"""Several worker processes on one study: `tuner run --workers N` (and `tuner worker --workers N`).

Workers are processes (spawned: no forked torch or database state), each with its share of the
cores for torch, each running the one run loop on a session of its own (`open_job`). They
coordinate only through the study's storage; the parent process runs no trials: it shows the
progress of all workers by polling the storage, reaps trials whose worker died, passes Ctrl-C /
SIGTERM on, and finishes the study when every worker is done.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from tuner.data import load_dataset
from tuner.errors import first_line, redact_logs
from tuner.execution._loop import show, stop_on_signals, work
from tuner.execution._options import RunOptions, threads_per_worker
from tuner.execution._progress import StudyProgress
from tuner.execution._runs import StudyRuns
from tuner.execution._session import Session
from tuner.execution._spawn import start_processes
from tuner.execution._trial import TrialOutcome
from tuner.search import (
    ATTR_PRUNER,
    TRIAL_INTERRUPTED,
    TRIAL_PARAMS,
    TRIAL_REASON,
    TRIAL_SEED,
    TRIAL_SURPLUS,
    StoppingRules,
    StudyHandle,
    check_parallel,
    find_study,
    make_pruner,
    open_storage,
    reap_stale,
    seeded_sampler,
    shared_url,
)
from tuner.space import PrunerSpec, Space, parse_space
from tuner.tracking import join_tracker

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
    rules: StoppingRules = field(default_factory=StoppingRules)
    pack: int | None = 1
    device: str = "cpu"

    @classmethod
    def of(cls, session: Session, storage: str | None, threads: int | None,
           storage_retry_s: float) -> Job:
        runs = session.runs
        tracking_uri = None if runs is None else runs.tracker.tracking_uri
        if tracking_uri is not None and tracking_uri.startswith("sqlite:///"):
            tracking_uri = shared_url(tracking_uri)
        pruner = str(session.study.user_attrs.get(ATTR_PRUNER, "none"))
        return cls(session.space.text, session.space.file, shared_url(storage),
                   session.study.study_name, session.strategy, session.seed, pruner,
                   session.target, threads, session.heartbeat_timeout, storage_retry_s,
                   runs is not None, tracking_uri,
                   runs.tracker.experiment_id if runs else None, runs.parent if runs else None,
                   session.rules, session.pack, session.device)


def check_scaling(options: RunOptions) -> tuple[int, list[str]]:
    """Refuse a storage that several processes cannot share before anything is written; torch
    threads for this process (or each worker) and a note if they were lowered."""
    if options.workers > 1 or options.dask is not None:
        check_parallel(options.storage,
                       "--dask" if options.dask else f"--workers {options.workers}")
    threads, note = threads_per_worker(options.threads, options.workers)
    return threads, [note] if note and options.workers > 1 else []


def pruner_spec_for(space: Space, name: str | None) -> PrunerSpec:
    """The pruner a study runs with: the space's, or another by name; none with several
    objectives (Optuna cannot prune them)."""
    spec = space.study.pruner
    if space.multi:
        name = "none"
    if name is None or name == spec.name:
        return spec
    return PrunerSpec(name, spec.startup_trials, spec.warmup_epochs, spec.min_resource,
                      spec.reduction_factor)


def open_job(job: Job, torch_threads: int | None = None) -> Session:
    """The worker side: this process's session on the job's study (no new study, no parent run)."""
    import torch

    torch.set_num_threads(torch_threads or job.threads or 1)
    space = parse_space(job.space_text, file=job.space_file)
    data = load_dataset(space.data)
    storage = open_storage(job.storage, job.storage_retry_s)
    pruner = pruner_spec_for(space, job.pruner)
    study = find_study(storage, job.study, seeded_sampler(job.strategy, job.seed, space.multi),
                       make_pruner(pruner, space.training.max_epochs))
    handle = StudyHandle(study, storage.get_study_id_from_name(job.study), storage, False)
    runs = None
    if job.tracking and job.experiment_id and job.parent_run_id:
        tracker = join_tracker(job.tracking_uri, job.experiment_id, job.parent_run_id)
        runs = StudyRuns(tracker, space, job.study, job.strategy, job.parent_run_id)
    return Session(space, handle, data, job.seed, job.strategy, job.target,
                   pruner.name != "none", runs, job.heartbeat_timeout, job.rules,
                   pack=job.pack, device=job.device)


def _worker_main(job: Job, index: int, results: Any, ready: Any) -> None:
    """A spawned worker process: run trials until the study needs no more, or a signal."""
    os.setpgrp()  # Ctrl-C in a terminal reaches the parent only; it passes each signal on once
    quiet_process()
    stop = threading.Event()
    session: Session | None = None
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
            work(session, stop)
    except KeyboardInterrupt:
        code = 130
    except BaseException as exc:
        print(f"tuner: worker {index} failed: {type(exc).__name__}: {first_line(exc)}",
              file=sys.stderr)
        code = 1
    if session is not None:
        try:
            if code:
                session.abort(killed=code == 130)
            results.put({"index": index, **session.report()})
            if session.runs is not None:
                session.runs.tracker.close()
        except Exception as exc:  # MLflow unreachable at the very end: the study is recorded
            print(f"tuner: worker {index}: {type(exc).__name__}: {first_line(exc)}",
                  file=sys.stderr)
    results.close()
    results.join_thread()  # the queue's feeder thread must deliver before os._exit
    sys.stdout.flush()
    os._exit(code or (130 if stop.is_set() else 0))  # no atexit work: torch pools, queues


def quiet_process() -> None:
    """A spawned process's logging as the parent's: passwords masked, Optuna and MLflow at
    warnings (the parent's set-up does not reach it)."""
    import logging
    import warnings

    import optuna

    redact_logs()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def run_parallel(session: Session, job: Job, workers: int, stop: threading.Event,
                 progress: StudyProgress,
                 on_trial: Callable[[TrialOutcome], None] | None) -> list[str]:
    """Run `workers` processes on the job's study and watch them; returns notes for the user."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    ready = ctx.Barrier(workers)
    procs = [ctx.Process(target=_worker_main, args=(job, i, results, ready),
                         name=f"tuner-worker-{i}", daemon=False) for i in range(workers)]
    start_processes(procs)

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
    for item in stats:
        session.stats.add(item)
    notes = [f"{workers} worker processes, {job.threads} torch thread(s) each"]
    for i, proc in enumerate(procs):
        code = proc.exitcode
        if code not in (0, 130):
            died = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 \
                else f"exit code {code}"
            notes.append(f"worker {i} ended with {died}; its running trial is retried once "
                         "by a live worker or the next run")
    return notes


def _drain(results: Any, into: list[dict[str, Any]]) -> None:
    while True:
        try:
            into.append(results.get_nowait())
        except (queue.Empty, OSError, ValueError):
            return


class StudyWatch:
    """The parent's view of a study that other processes work on: each `poll` reaps the trials
    of dead workers, reports newly finished trials to `on_trial`, and updates the progress."""

    def __init__(self, session: Session, progress: StudyProgress,
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
    state = trial.state.name
    if trial.state == TrialState.FAIL and trial.user_attrs.get(TRIAL_INTERRUPTED):
        state = "INTERRUPTED"
    return TrialOutcome(trial.number, state, dict(trial.user_attrs.get(TRIAL_PARAMS, trial.params)),
                        int(trial.user_attrs.get(TRIAL_SEED, 0)), value=trial.value,
                        reason=str(trial.user_attrs.get(TRIAL_REASON, "")))
