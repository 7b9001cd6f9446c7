"""`tuner compare`: every strategy gets the same budget, data split, pruner and epochs, repeated
with different seeds; the studies live under one MLflow comparison run, and the results become a
summary table, tidy CSVs, best-so-far curves and a short report.

Fair budget for grid: the space's own grid (its `grid_points`) when it has at least `trials`
points, else the coarsest finer grid that does; a grid larger than the budget is sampled: each
repeat runs a seeded random `trials` of its points. So every strategy runs exactly `trials`
trials, unless the grid cannot grow (every numeric parameter has explicit `grid:` values).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.trial import TrialState

from tuner.analysis import (
    Comparison,
    GridPlan,
    StudyPlan,
    build_comparison,
    clean,
    comparison_files,
    comparison_metrics,
)
from tuner.data import load_dataset
from tuner.errors import OptionError, TunerError, check_name
from tuner.execution._options import (
    CompareOptions,
    Preparation,
    RunOptions,
    StudyTask,
    threads_per_worker,
)
from tuner.execution._run import run_study
from tuner.execution._side_by_side import StudyProcesses, crowding_note, jobs_for
from tuner.execution._study_process import warm_up
from tuner.search import (
    ATTR_EXPERIMENT,
    ATTR_FALLBACK,
    ATTR_PARENT_RUN,
    counted_trials,
    describe,
    open_storage,
    random_start_note,
    shared_start_note,
)
from tuner.space import (
    MAX_GRID_POINTS,
    FloatParam,
    IntParam,
    Space,
)
from tuner.tracking import (
    SharedWriter,
    Tracker,
    check_comparison,
    check_store,
    log_study_outcome,
    prepare_client,
    run_status,
    spare_core,
    start_comparison,
)


class Listener(Protocol):
    """What a live view hears while a comparison runs."""

    def study_started(self, plan: StudyPlan, done: int, skipped: bool, best: float | None,
                      pruned: int) -> None: ...

    def trial_done(self, plan: StudyPlan, state: str, value: float | None) -> None: ...

    def study_ended(self, plan: StudyPlan) -> None: ...


def repeat_seed(seed: int, repeat: int) -> int:
    """The study seed of one repeat: every strategy of a repeat shares it (and so the trial
    seeds of its first trials), repeats differ."""
    return int(np.random.SeedSequence([seed, repeat]).generate_state(1)[0] % 2**31)


def plan_grid(space: Space, budget: int) -> tuple[GridPlan, Space]:
    """The grid resolution for `budget` trials, and the space with that resolution."""
    own = space.params.grid_points
    space.params.grid_target(budget, space.file)  # counted, never built: refused if uncountable
    size = space.params.grid_size() or 0
    points = own
    free = any(isinstance(p, FloatParam | IntParam) and p.grid is None and p.grid_points is None
               for p in space.params)
    while free and size < budget and points < min(own + 50, MAX_GRID_POINTS):
        points += 1
        finer = dataclasses.replace(space.params, grid_points=points).grid_size()
        if finer is None:  # too many to count: far more than any budget
            points -= 1
            break
        size = finer
    plan = GridPlan(points, size, min(size, budget), own)
    if points == own:
        return plan, space
    canonical = json.loads(space.canonical)
    canonical.setdefault("study", {})["grid_points"] = points  # the study records its real grid
    return plan, dataclasses.replace(
        space, params=dataclasses.replace(space.params, grid_points=points),
        canonical=json.dumps(canonical, sort_keys=True, default=str))


def check_options(space: Space, options: CompareOptions) -> tuple[str, int, int]:
    """What depends on the space fails here, before anything is written. Returns (name, trials,
    seed)."""
    if space.multi:  # time-to-target needs one value per trial
        raise TunerError(f"{space.file} has {len(space.objectives)} objectives; `tuner compare` "
                         "compares single-objective studies (run each strategy with `tuner "
                         "run --strategy`, then `tuner best` lists each front)")
    trials = space.study.trials if options.trials is None else options.trials
    name = options.comparison_name(space.name)
    check_name("name", name)
    out = Path(options.out or Path("reports") / name)
    if out.exists() and not out.is_dir():
        raise OptionError("out", f"{str(out)!r} exists and is not a folder")
    seed = space.study.seed if options.seed is None else options.seed
    return name, trials, seed


def run_comparison(space: Space, options: CompareOptions,
                   listener: Listener | None = None,
                   on_plan: Callable[[str, list[StudyPlan], GridPlan | None, str, tuple[str, ...]],
                                     None] | None = None,
                   ) -> Comparison:
    """Run (or resume) every (strategy, repeat) study, then summarise and write the report.
    `on_plan(name, plans, grid, comparison run id, notes)` hears the plan before any study runs."""
    name, trials, seed = check_options(space, options)
    experiment = options.experiment_name(space.name)
    # Where a core is spare, one writer process for every study: it makes MLflow's and model
    # logging's imports once, beside this process's, and the studies' trial runs and models
    # are written there, off this process's interpreter lock. With --jobs, each study's
    # process writes its own.
    with SharedWriter(options.tracking_uri, experiment, options.log_model,
                      start=options.jobs == 1 and spare_core(options.threads or 1)):
        return _compare(space, options, name, trials, seed, experiment, listener, on_plan)


def _compare(space: Space, options: CompareOptions, name: str, trials: int, seed: int,
             experiment: str, listener: Listener | None,
             on_plan: Callable[[str, list[StudyPlan], GridPlan | None, str, tuple[str, ...]],
                               None] | None) -> Comparison:
    said = (shared_start_note(options.strategies, trials),
            crowding_note(options.jobs, os.cpu_count() or 1))
    notes = tuple(note for note in said if note)
    # --jobs: the studies' processes start now; they make their imports meanwhile.
    with StudyProcesses.started(jobs_for(options), Preparation.of(space, options)) \
            if options.jobs > 1 else contextlib.nullcontext() as processes:
        return _prepared(space, options, name, trials, seed, experiment, listener, on_plan, notes,
                         processes)


def _prepared(space: Space, options: CompareOptions, name: str, trials: int, seed: int,
              experiment: str, listener: Listener | None,
              on_plan: Callable[[str, list[StudyPlan], GridPlan | None, str, tuple[str, ...]],
                                None] | None, notes: tuple[str, ...],
              processes: StudyProcesses | None) -> Comparison:
    data = load_dataset(space.data)  # bad data fails before any study or run exists
    grid, grid_space = plan_grid(space, trials) if "grid" in options.strategies else (None, space)
    plans = [StudyPlan(s, r, repeat_seed(seed, r), f"{name}-{s}-r{r}",
                       grid.trials if s == "grid" and grid else trials)
             for r in range(options.repeats) for s in options.strategies]
    pruner = options.pruner or space.study.pruner.name
    params = {"space": space.name, "space_hash": space.hash, "trials": trials, "seed": seed,
              "pruner": pruner, "max_epochs": space.training.max_epochs,
              "objective": space.objective.key, "data": space.data.source}
    # In seconds, before anything is written; where a writer process checks, this process
    # imports what its own client needs meanwhile.
    check_store(options.tracking_uri, experiment,
                meanwhile=lambda: prepare_client(options.tracking_uri))
    check_comparison(options.tracking_uri, experiment, name, params)
    storage = open_storage(options.storage)
    tracker = Tracker(options.tracking_uri, experiment)
    # Tags, unlike params, may change when the comparison is resumed or extended.
    tags = {"strategies": ",".join(options.strategies), "repeats": str(options.repeats),
            "direction": space.objective.direction, "storage": describe(options.storage)}
    if grid is not None:
        tags["grid"] = grid.describe()
    with tracker:
        run_id = start_comparison(tracker, name, tags, params)
        if on_plan is not None:
            on_plan(name, plans, grid, run_id, notes)
        if options.jobs == 1:  # each process of --jobs warms itself up
            warm_up(data, options.threads or 1)
        return _run_plans(space, grid_space, options, name, experiment, run_id, grid, plans,
                          params, tags, storage, tracker, listener, notes, processes)


def _run_plans(space: Space, grid_space: Space, options: CompareOptions, name: str,
               experiment: str, run_id: str, grid: GridPlan | None, plans: list[StudyPlan],
               params: dict[str, Any], tags: dict[str, str], storage: Any, tracker: Tracker,
               listener: Listener | None, notes: tuple[str, ...],
               processes: StudyProcesses | None) -> Comparison:
    tasks = [StudyTask(i, grid_space if plan.strategy == "grid" else space,
                       _study_options(plan, options, name, experiment, run_id, grid),
                       optuna.logging.get_verbosity()) for i, plan in enumerate(plans)]
    try:
        if processes is not None:
            progress = [_progress_of(storage, plan, tracker.experiment_id,
                                     lambda run: run_status(tracker, run)) for plan in plans]
            interrupted = _side_by_side(plans, tasks, progress, processes, listener)
        else:
            interrupted = _one_at_a_time(plans, tasks, storage, tracker, listener)
        notes = (*notes, *_strategy_notes(storage, plans))
        if options.jobs > 1:
            lowered = threads_per_worker(options.threads, options.jobs, "jobs")[1]
            notes = (*notes, *([lowered] if lowered else []), f"studies ran {options.jobs} at a "
                     "time: their times include each other's use of the machine")
        settings = {**params, "strategies": list(options.strategies), "repeats": options.repeats,
                    "storage": tags["storage"]}
        comparison = build_comparison(
            space, name, run_id, grid, plans, storage, tracker, settings,
            list(options.strategies), options.target,
            Path(options.out or Path("reports") / name), interrupted, notes)
        _record(comparison, tracker)
    except BaseException:
        tracker.end_run(run_id, "KILLED")
        raise
    tracker.end_run(run_id, "KILLED" if interrupted else "FINISHED")
    return comparison


def _study_options(plan: StudyPlan, options: CompareOptions, name: str, experiment: str,
                   run_id: str, grid: GridPlan | None) -> RunOptions:
    """How one study of the comparison runs: the same, whichever process runs it."""
    extra = [("repeat", str(plan.repeat)), ("comparison", name)]
    if plan.strategy == "grid" and grid is not None:
        extra.append(("grid_points", str(grid.grid_points)))
    threads = options.threads if options.jobs == 1 else threads_per_worker(
        options.threads, options.jobs, "jobs")[0]
    return RunOptions(
        strategy=plan.strategy, trials=plan.trials, seed=plan.seed, pruner=options.pruner,
        storage=options.storage, study_name=plan.name, experiment=experiment,
        tracking_uri=options.tracking_uri, log_model=options.log_model, threads=threads,
        progress=False, views=options.views, parent_run_id=run_id, extra_tags=tuple(extra),
        refit=options.refit, pack=options.pack, device=options.device)


def _one_at_a_time(plans: list[StudyPlan], tasks: list[StudyTask], storage: Any,
                   tracker: Tracker, listener: Listener | None) -> bool:
    """The studies in this process, in order; True if one was interrupted."""
    for plan, task in zip(plans, tasks, strict=True):
        # Read when the study starts: a resumed comparison's earlier studies wrote to it.
        finished, done, best, pruned = _progress_of(
            storage, plan, tracker.experiment_id, lambda run: run_status(tracker, run))
        if listener is not None:
            listener.study_started(plan, done, finished, best, pruned)
        if finished:
            continue
        on_trial = None if listener is None else (
            lambda outcome, plan=plan: listener.trial_done(plan, outcome.state, outcome.value))
        result = run_study(task.space, dataclasses.replace(task.options, on_trial=on_trial))
        if listener is not None:
            listener.study_ended(plan)
        if result.interrupted:
            return True
    return False


def _side_by_side(plans: list[StudyPlan], tasks: list[StudyTask],
                  progress: list[tuple[bool, int, float | None, int]],
                  processes: StudyProcesses, listener: Listener | None) -> bool:
    """The unfinished studies in the study processes; True if they were interrupted."""
    for plan, (finished, done, best, pruned) in zip(plans, progress, strict=True):
        if finished and listener is not None:
            listener.study_started(plan, done, True, best, pruned)

    def hear(event: tuple[Any, ...]) -> None:
        if listener is None:
            return
        plan = plans[event[1]]
        if event[0] == "started":
            _, done, best, pruned = progress[event[1]]
            listener.study_started(plan, done, False, best, pruned)
        elif event[0] == "trial":
            listener.trial_done(plan, event[2], event[3])
        elif event[0] == "ended":
            listener.study_ended(plan)

    todo = [task for task, (finished, *_) in zip(tasks, progress, strict=True) if not finished]
    return processes.run(todo, hear) if todo else False  # leaving the block ends them


def _strategy_notes(storage: Any, plans: list[StudyPlan]) -> list[str]:
    """A note for each strategy whose studies did not run as their name says in some repeats:
    a model that never started (a random search: comparing it with `random` compares noise),
    or GP handing the rest of a study to TPE (`GuardedSampler`)."""
    found: dict[tuple[str, str], list[str]] = {}
    repeats: dict[str, int] = {}
    names = {s.study_name for s in storage.get_all_studies()}
    for plan in plans:
        if plan.name not in names:
            continue
        repeats[plan.strategy] = repeats.get(plan.strategy, 0) + 1
        study = optuna.load_study(study_name=plan.name, storage=storage)
        drawn = random_start_note(plan.strategy, study.get_trials(deepcopy=False))
        fallback = study.user_attrs.get(ATTR_FALLBACK)
        for kind, note in (("random", drawn),
                           ("fallback", f"{plan.strategy}: {fallback}" if fallback else None)):
            if note is not None:
                found.setdefault((plan.strategy, kind), []).append(note)
    return [f"{notes[0]} (in {len(notes)} of {repeats[strategy]} repeats)"
            for (strategy, _), notes in found.items()]


def _progress_of(storage: Any, plan: StudyPlan, experiment_id: str,
                 status: Callable[[str], str | None]) -> tuple[bool, int, float | None, int]:
    """(finished, counted trials, best value, pruned trials) of a study that may exist already;
    finished means the budget is spent, nothing is queued or running, and the study's parent
    run ended FINISHED in this experiment."""
    summary = next((s for s in storage.get_all_studies() if s.study_name == plan.name), None)
    if summary is None:
        return False, 0, None, 0
    study = optuna.load_study(study_name=plan.name, storage=storage)
    done = counted_trials(study)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = study.best_value if complete else None
    pruned = len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    open_trials = study.get_trials(deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    attrs = summary.user_attrs
    run = attrs.get(ATTR_PARENT_RUN)
    finished = (done >= plan.trials and not open_trials and run is not None
                and attrs.get(ATTR_EXPERIMENT) == experiment_id and status(run) == "FINISHED")
    return finished, done, best, pruned


def _record(comparison: Comparison, tracker: Tracker) -> None:
    """Write the report folder and log the same to the comparison run; each study's parent run
    gets its standing (reach of the target, best so far per trial)."""
    run_id, trials, studies = comparison.run_id, comparison.trials, comparison.studies
    files = comparison_files(comparison)
    out = comparison.out
    out.mkdir(parents=True, exist_ok=True)
    for file_name, content in files.items():
        path = out / file_name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(
            content, encoding="utf-8")
    tracker.log_summary(run_id, comparison_metrics(comparison.strategies, comparison.target))
    tracker.log_artifacts(run_id, files)
    for row in studies.itertuples():
        if isinstance(row.parent_run_id, str):
            curve = trials[trials.study == row.study][["trial", "best_so_far"]].dropna()
            log_study_outcome(tracker, row.parent_run_id, clean({
                "trials_to_target": row.trials_to_target, "time_to_target_s": row.time_to_target_s,
                "epochs_total": row.epochs, "pruned_share": row.pruned_share,
                "wall_s": row.wall_s}), list(zip(curve.trial, curve.best_so_far, strict=True)))
