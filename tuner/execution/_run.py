"""`run_study`: create or resume a study and run it to its budget, in every mode.

It prepares once (options checked, data loaded, study opened or created, budget planned, warm
start applied, parent run opened), then the trials run through the one run loop: here
(`work`), in local worker processes or as Dask tasks (`run_elsewhere`); then the study is
finished once (test evaluation, artifacts, model) and every run is ended, whatever happened.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import torch
from optuna.trial import TrialState

from tuner import _collector as collector
from tuner.data import load_dataset
from tuner.errors import check_name
from tuner.execution._dask import run_on_dask
from tuner.execution._finish import finish_study, load_views
from tuner.execution._loop import show, stop_on_signals, work
from tuner.execution._options import RunOptions, StudyResult
from tuner.execution._progress import StudyProgress
from tuner.execution._runs import StudyRuns
from tuner.execution._session import Session
from tuner.execution._warn import warn_failure
from tuner.execution._workers import Job, check_scaling, pruner_spec_for, run_parallel
from tuner.search import (
    ATTR_STOPPING,
    TRIAL_PARAMS,
    TRIAL_REASON,
    StoppingRules,
    apply_warm_start,
    check_warm_start,
    counted_trials,
    default_study_name,
    describe,
    discard_if_unused,
    format_front,
    make_pruner,
    open_storage,
    open_study,
    plan_budget,
    random_start_note,
    reap_stale,
    seeded_sampler,
    study_done,
    uncounted,
)
from tuner.space import Space
from tuner.tracking import Tracker, check_store, writer_prestarted
from tuner.training import resolve_device


def run_study(space: Space, options: RunOptions | None = None) -> StudyResult:
    """Create or resume the study described by `space` and run it to its trial budget."""
    options = options or RunOptions()
    started = time.perf_counter()
    rules = StoppingRules.starting_now(options.patience, options.timeout)
    strategy = options.strategy or space.study.strategy
    seed = space.study.seed if options.seed is None else options.seed
    sampler = seeded_sampler(strategy, seed, space.multi)  # a bad strategy fails here
    pruner = pruner_spec_for(space, options.pruner)
    threads, notes = check_scaling(options)
    torch.set_num_threads(threads)
    device = resolve_device(options.device)
    data = load_dataset(space.data)  # bad data fails here, before any study or run exists
    if strategy == "grid":  # a grid too large to run whole is refused before it is queued
        space.params.grid_target(options.trials, space.file)
    name = options.study_name or default_study_name(space, strategy, seed)
    check_name("study_name", name, "the default study name (from the space's name)")
    if options.tracking:  # an unusable MLflow store fails in seconds, before the study exists
        check_store(options.tracking_uri, options.experiment or space.name,
                    meanwhile=load_views if options.views and not space.multi else None)
    storage = open_storage(options.storage, options.storage_retry_s)
    known = check_warm_start(storage, name, space, options)  # before anything is written
    handle = open_study(storage, name, space, strategy, seed, sampler,
                        make_pruner(pruner, space.training.max_epochs),
                        allow_change=options.allow_space_change)
    target = plan_budget(handle, space, strategy, seed, options.trials, pruner.name, notes)
    target += apply_warm_start(handle.study, space, storage, options, known, notes)
    if handle.study.user_attrs.get(ATTR_STOPPING) != rules.as_attr():  # for `tuner worker`
        handle.study.set_user_attr(ATTR_STOPPING, rules.as_attr())
    if space.multi:
        notes.append("pruning is off: Optuna cannot prune multi-objective trials")
    # One process trains and `tuner.run_study` has a writer process for it (started beside the
    # imports, or kept from the interpreter's last study; it had a spare core): trial runs are
    # written there, off this GIL, and the model logged there, its imports made meanwhile.
    # Otherwise a thread writes (a writer started now would keep a short study's end waiting
    # for its imports), and hands the trial runs over to a writer process if the study's
    # trials so far say that enough of it is left.
    alone = options.workers == 1 and options.dask is None
    with discard_if_unused(handle):  # MLflow failing now must not leave an empty study behind
        tracker = Tracker(options.tracking_uri, options.experiment or space.name,
                          process=alone and writer_prestarted(), warm_up=options.log_model,
                          hand_over=max(0, target - counted_trials(handle.study)) if alone
                          else None) if options.tracking else None
    try:
        with discard_if_unused(handle):
            runs = None if tracker is None else StudyRuns.open(
                tracker, handle.study, space, strategy, seed, pruner.name,
                parent_run_id=options.parent_run_id, extra_tags=dict(options.extra_tags))
        if handle.changes and runs is not None:
            runs.tracker.log_summary(runs.parent, {},
                                     {"space_changes": json.dumps(list(handle.changes))})
        session = Session(space, handle, data, seed, strategy, target, pruner.name != "none",
                          runs, options.heartbeat_timeout, rules, pack=options.pack,
                          device=str(device))
        collector.resume()  # the imports are made (where `tuner run` paused the collector)
        interrupted, final = _drive(session, options, threads, notes)
        return study_result(session, started, interrupted, describe(options.storage), final, notes,
                            tracker)
    finally:
        if tracker is not None:
            tracker.close()


def _drive(session: Session, options: RunOptions, threads: int,
           notes: list[str]) -> tuple[bool, dict[str, Any]]:
    """Run the trials, finish the study, end the parent run; (interrupted, final results)."""
    stop = threading.Event()
    study = session.study
    progress = StudyProgress(study.study_name, session.target, counted_trials(study),
                             enabled=options.progress)
    show(session, progress)  # a resumed (or finished) study starts from its best and counts
    try:
        with progress:
            if options.workers > 1 or options.dask is not None:
                notes += run_elsewhere(session, options, threads, stop, progress)
            else:
                with stop_on_signals(stop, progress):
                    work(session, stop, progress=progress, on_trial=options.on_trial)
        interrupted = stop.is_set()
        if session.stats.stopped:
            notes.append(session.stats.stopped)
        drawn = random_start_note(session.strategy, study.get_trials(deepcopy=False))
        if drawn is not None:  # a TPE, GP or NSGA-II study that was a random search
            notes.append(drawn)
        done = counted_trials(study)
        if not interrupted and not session.stats.stopped and done < session.target \
                and not session.grid:
            raise RuntimeError(f"the study has {done} of {session.target} trials after all "
                               "workers ended (see the notes above); run the same command to "
                               "resume")
        final = {} if interrupted else finish_study(session, options.log_model, options.views,
                                                    options.refit)
    except BaseException as exc:
        killed = isinstance(exc, KeyboardInterrupt)
        session.abort(killed)
        if session.runs is not None:
            try:
                session.runs.end("KILLED" if killed else "FAILED")
            except Exception as failure:
                warn_failure("the study's MLflow run could not be ended", failure)
        raise
    if session.runs is not None:
        session.runs.end("KILLED" if interrupted else "FINISHED")
    if session.space.multi:
        notes.append(format_front(study))
    return interrupted, final


def run_elsewhere(session: Session, options: RunOptions, threads: int,
                  stop: threading.Event, progress: StudyProgress) -> list[str]:
    """`tuner run --workers N` / `--dask`: the trials run in other processes; returns notes."""
    reap_stale(session.handle, session.heartbeat_timeout, session.end_lost_run)
    if study_done(session.handle, session.grid, session.target):
        return []  # a finished study: no worker to start
    job = Job.of(session, options.storage, None if options.dask else threads,
                 options.storage_retry_s)
    if options.dask is not None:
        return run_on_dask(session, job, options.dask, options.workers, stop, progress,
                           options.on_trial)
    return run_parallel(session, job, options.workers, stop, progress, options.on_trial)


def study_result(session: Session, started: float, interrupted: bool, storage: str,
                 final: dict[str, Any], notes: list[str], tracker: Tracker | None) -> StudyResult:
    trials = session.study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = session.study.best_trial if complete and not session.space.multi else None
    if tracker is not None:
        tracker.flush()
    failed = [t for t in trials if t.state == TrialState.FAIL and not uncounted(t)]
    all_failed = bool(failed) and not complete and not any(
        t.state == TrialState.PRUNED for t in trials)
    if all_failed:
        notes.append(f"every trial failed ({len(failed)}); the last: "
                     f"{failed[-1].user_attrs.get(TRIAL_REASON, 'no reason recorded')}")
    return StudyResult(
        study=session.study.study_name, strategy=session.strategy, storage=storage,
        best_value=None if best is None else best.value,
        best_params={} if best is None else dict(best.user_attrs.get(TRIAL_PARAMS, best.params)),
        best_trial=None if best is None else best.number,
        n_complete=len(complete),
        n_pruned=sum(t.state == TrialState.PRUNED for t in trials),
        n_failed=sum(t.state == TrialState.FAIL and not uncounted(t) for t in trials),
        wall_s=round(time.perf_counter() - started, 3),
        trials_s=round(session.stats.trials_s, 3),
        training_s=round(session.stats.training_s, 3),
        tracking_s=round(session.stats.tracking_s, 3),
        tracking_background_s=round(tracker.background_seconds, 3) if tracker else 0.0,
        test_metrics=final.get("test_metrics", {}),
        mlflow_experiment_id=tracker.experiment_id if tracker else None,
        mlflow_parent_run_id=session.runs.parent if session.runs else None,
        tracking_uri=tracker.experiment_url() if tracker else None,
        model_uri=final.get("model_uri"),
        interrupted=interrupted,
        notes=notes,
        storage_s=round(session.stats.storage_s + session.storage_seconds(), 3),
        stopped=session.stats.stopped,
        all_failed=all_failed,
        test_model=final.get("test_model"),
        final=final.get("final", {}),
    )
