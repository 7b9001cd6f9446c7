"""The loop of a multi-objective study: ask, train, measure, tell the objective values."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from tuner._data import load_dataset
from tuner._errors import TunerError
from tuner._loop import stop_on_signals
from tuner._multi import (
    ATTR_OBJECTIVES,
    TRIAL_METRICS,
    finite,
    format_front,
    front_files,
    make_multi_sampler,
    pareto_front,
)
from tuner._objective import run_trial
from tuner._progress import StudyProgress
from tuner._runner import RunOptions, StudyResult
from tuner._spec import Space
from tuner._storage import describe, open_storage
from tuner._study import (
    ATTR_CANONICAL,
    ATTR_EXPERIMENT,
    ATTR_HASH,
    ATTR_PARENT_RUN,
    ATTR_SEED,
    ATTR_SPACE_FILE,
    ATTR_SPACE_TEXT,
    ATTR_STRATEGY,
    TRIAL_REASON,
    counted_trials,
    default_study_name,
)
from tuner._tracking import Tracker
from tuner._warmstart import apply_warm_start, check_warm_start
from tuner._workers import threads_per_worker


def run_multi_study(space: Space, options: RunOptions) -> StudyResult:
    started = time.perf_counter()
    strategy = options.strategy or space.study.strategy
    sampler = make_multi_sampler(strategy, space.study.seed if options.seed is None
                                 else options.seed)
    if options.workers > 1 or options.dask is not None:
        raise TunerError("a multi-objective study runs in one process; drop --workers/--dask")
    seed = space.study.seed if options.seed is None else options.seed
    threads, _ = threads_per_worker(options.threads, 1)
    torch.set_num_threads(threads)
    data = load_dataset(space.data)
    name = options.study_name or default_study_name(space, strategy, seed)
    storage = open_storage(options.storage, options.storage_retry_s)
    known = check_warm_start(storage, name, space, options)  # before anything is written
    existing = {s.study_name: s for s in storage.get_all_studies()}
    if name in existing and existing[name].user_attrs.get(ATTR_CANONICAL) not in (
            None, space.canonical):
        raise TunerError(f"study {name!r} was created from a different space; use another "
                         "--study name")
    directions: list[Any] = [o.direction for o in space.objectives]
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                directions=directions, load_if_exists=True)
    if [d.name.lower() for d in study.directions] != directions:
        raise TunerError(f"study {name!r} has other objectives; use another --study name")
    for key, value in ((ATTR_SPACE_TEXT, space.text), (ATTR_SPACE_FILE, space.file),
                       (ATTR_HASH, space.hash), (ATTR_STRATEGY, strategy), (ATTR_SEED, seed),
                       (ATTR_CANONICAL, space.canonical),
                       (ATTR_OBJECTIVES, [[o.key, o.direction] for o in space.objectives])):
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    notes = ["pruning is off: Optuna cannot prune multi-objective trials"]
    target = (options.trials or space.study.trials) + apply_warm_start(
        study, space, storage, options, known, notes)
    tracker = Tracker(options.tracking_uri, options.experiment or space.name) \
        if options.tracking else None
    parent = _open_parent(study, space, strategy, seed, tracker, options)
    stop = threading.Event()
    progress = StudyProgress(name, target, counted_trials(study), enabled=options.progress)
    ran = 0
    status = "FINISHED"
    try:
        with stop_on_signals(stop, progress), progress:
            while not stop.is_set() and counted_trials(study) < target:
                if options.timeout is not None and time.perf_counter() - started > options.timeout:
                    notes.append(f"stopped: the --timeout of {options.timeout:g} s ran out")
                    break
                _one_trial(study, space, data, seed, stop, tracker, parent, strategy)
                ran += 1
                progress.update(counted_trials(study), None, 0, 0)
        if stop.is_set():
            status = "KILLED"
    except BaseException:
        if tracker is not None and parent is not None:
            tracker.end_run(parent, "FAILED")
        raise
    if tracker is not None and parent is not None:
        if pareto_front(study):
            tracker.log_artifacts(parent, {**front_files(study), "space.yaml": space.text},
                                  folder="pareto")
            tracker.log_summary(parent, {"front_size": len(pareto_front(study))},
                                {"pareto_front": json.dumps([m.number for m in
                                                             pareto_front(study)])})
        tracker.end_run(parent, status)
    notes.append(format_front(study))
    trials = study.get_trials(deepcopy=False)
    return StudyResult(
        study=name, strategy=strategy, storage=describe(options.storage), best_value=None,
        best_params={}, best_trial=None,
        n_complete=sum(t.state == TrialState.COMPLETE for t in trials),
        n_pruned=0, n_failed=sum(t.state == TrialState.FAIL for t in trials),
        wall_s=round(time.perf_counter() - started, 3), trials_s=0.0,
        tracking_s=round(tracker.seconds, 3) if tracker else 0.0, test_metrics={},
        mlflow_experiment_id=tracker.experiment_id if tracker else None,
        mlflow_parent_run_id=parent,
        tracking_uri=tracker.experiment_url() if tracker else None, model_uri=None,
        interrupted=stop.is_set(), notes=notes)


def _open_parent(study: optuna.Study, space: Space, strategy: str, seed: int,
                 tracker: Tracker | None, options: RunOptions) -> str | None:
    if tracker is None:
        return None
    attrs = study.user_attrs
    resume = attrs.get(ATTR_PARENT_RUN) if attrs.get(ATTR_EXPERIMENT) == tracker.experiment_id \
        else None
    objectives = ",".join(f"{o.key}:{o.direction}" for o in space.objectives)
    tags = {"study": study.study_name, "strategy": strategy, "seed": str(seed),
            "space_hash": space.hash, "space_name": space.name, "objectives": objectives,
            "pruner": "none", "constraints": "; ".join(c.describe() for c in space.constraints),
            **dict(options.extra_tags)}
    parent = tracker.start_study(study.study_name, tags, {"strategy": strategy, "seed": seed,
                                 "objectives": objectives}, resume,
                                 parent_run_id=options.parent_run_id)
    if parent != resume:
        study.set_user_attr(ATTR_PARENT_RUN, parent)
        study.set_user_attr(ATTR_EXPERIMENT, tracker.experiment_id)
    return parent


def _one_trial(study: optuna.Study, space: Space, data: Any, seed: int, stop: threading.Event,
               tracker: Tracker | None, parent: str | None, strategy: str) -> None:
    trial = study.ask()
    runs: list[Any] = []

    def start(params: dict[str, Any]) -> Any:
        if tracker is None or parent is None:
            return None
        tags = {"strategy": strategy,
                **({"enqueued": "true"} if trial.user_attrs.get("enqueued") else {})}
        runs.append(tracker.start_trial(parent, study.study_name, trial.number, params, tags))
        return runs[-1]

    outcome, _ = run_trial(trial, space, data, seed, stop, False, start)
    run = runs[-1] if runs else None
    if outcome.reason:
        trial.set_user_attr(TRIAL_REASON, outcome.reason)
    if outcome.state == "COMPLETE" and finite(outcome.values):
        trial.set_user_attr(TRIAL_METRICS, outcome.metrics)
        study.tell(trial, outcome.values)
    else:
        # An interrupted trial is failed (not requeued): the sampler asks afresh on resume.
        outcome.state = "FAIL" if outcome.state == "COMPLETE" else outcome.state
        study.tell(trial, state=TrialState.FAIL)
    if run is not None:
        metrics = {f"objective_{o.key}": v for o, v in
                   zip(space.objectives, outcome.values or [], strict=False)}
        metrics.update({k: v for k, v in outcome.metrics.items() if k in ("params", "latency")})
        run.finish({"INTERRUPTED": "KILLED"}.get(outcome.state, outcome.state),
                   {"epochs": outcome.epochs, "seed": outcome.seed,
                    **({"reason": outcome.reason} if outcome.reason else {})}, metrics)
