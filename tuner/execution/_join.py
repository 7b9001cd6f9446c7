"""`tuner worker`: join a stored study from any host and run its trials through the same run loop;
the space, strategy, seed, pruner, budget and stopping rules come from the study. The test
evaluation and the parent run's summary stay with `tuner run`."""

from __future__ import annotations

import logging
import threading
import time

from tuner import _collector as collector
from tuner.errors import TunerError
from tuner.execution._loop import show, stop_on_signals, work
from tuner.execution._options import StudyResult, WorkerOptions
from tuner.execution._progress import StudyProgress
from tuner.execution._run import study_result
from tuner.execution._workers import Job, open_job, run_parallel, threads_per_worker
from tuner.search import (
    ATTR_EXPERIMENT,
    ATTR_PARENT_RUN,
    ATTR_PRUNER,
    ATTR_SEED,
    ATTR_STOPPING,
    ATTR_STRATEGY,
    ATTR_TRIALS,
    StoppingRules,
    check_parallel,
    counted_trials,
    describe,
    find_study,
    open_storage,
    shared_url,
    stored_space,
)
from tuner.training import resolve_device

_log = logging.getLogger("tuner")


def join_study(options: WorkerOptions) -> StudyResult:
    started = time.perf_counter()
    if options.workers > 1:
        check_parallel(options.storage, f"--workers {options.workers}")
    storage = open_storage(options.storage, options.storage_retry_s)
    study = find_study(storage, options.study)
    space = stored_space(study)
    attrs = study.user_attrs
    if ATTR_STRATEGY not in attrs:
        raise TunerError(f"study {options.study!r} was not created by `tuner run`")
    threads, thread_note = threads_per_worker(options.threads, options.workers)
    experiment, parent = attrs.get(ATTR_EXPERIMENT), attrs.get(ATTR_PARENT_RUN)
    job = Job(space.text, space.file, shared_url(options.storage), options.study,
              str(attrs[ATTR_STRATEGY]), int(attrs[ATTR_SEED]),
              str(attrs.get(ATTR_PRUNER, space.study.pruner.name)),
              options.trials or int(attrs.get(ATTR_TRIALS, space.study.trials)), threads,
              options.heartbeat_timeout, options.storage_retry_s,
              options.tracking and bool(experiment and parent), options.tracking_uri,
              experiment, parent, StoppingRules.from_attr(attrs.get(ATTR_STOPPING)),
              options.pack, str(resolve_device(options.device)))
    if space.trainer is not None:
        # Said before anything runs: joining a study runs the code its space names (like
        # unpickling, only for studies one trusts), and the user should see which before it does.
        _log.warning("study %s runs code: its space's trainer %s is imported and called here "
                     "(join only studies you trust)", options.study, space.trainer)
    session = open_job(job)
    notes = [thread_note] if thread_note else []
    if space.trainer is not None:
        notes.append(f"trainer: imports and runs {space.trainer} (from the study's space)")
    if options.tracking and session.runs is None:
        notes.append("the study has no MLflow parent run: trials are not tracked")
    bar = StudyProgress(options.study, job.target, counted_trials(session.study),
                        enabled=options.progress)
    show(session, bar)
    stop = threading.Event()
    collector.resume()  # the imports are made (where `tuner worker` paused the collector)
    try:
        if options.workers > 1:
            with bar:
                notes += run_parallel(session, job, options.workers, stop, bar, None)
        else:
            with stop_on_signals(stop, bar), bar:
                work(session, stop, progress=bar)
    except BaseException as exc:
        session.abort(killed=isinstance(exc, KeyboardInterrupt))
        raise
    finally:
        if session.runs is not None:
            session.runs.tracker.close()
    if session.stats.stopped:
        notes.append(session.stats.stopped)
    return study_result(session, started, stop.is_set(), describe(options.storage), {}, notes,
                        session.runs.tracker if session.runs is not None else None)
