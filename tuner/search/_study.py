"""Creating and resuming studies; the space a study was made from is stored with it."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import optuna
from optuna.distributions import check_distribution_compatibility
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import OptionError
from tuner.search._optuna import queued_params, set_state, trial_id, trial_of
from tuner.space import GRID_LIMIT, Grid, Space

# Study user attributes written by tuner.
ATTR_SPACE_TEXT = "tuner.space_text"
ATTR_SPACE_FILE = "tuner.space_file"
ATTR_CANONICAL = "tuner.space_canonical"
ATTR_HASH = "tuner.space_hash"
ATTR_STRATEGY = "tuner.strategy"
ATTR_SEED = "tuner.seed"
ATTR_PARENT_RUN = "tuner.mlflow_parent_run_id"
ATTR_EXPERIMENT = "tuner.mlflow_experiment_id"
ATTR_TRIALS = "tuner.trials"  # the latest budget, for `tuner worker` (which has no --trials)
ATTR_PRUNER = "tuner.pruner"
ATTR_SPACE_CHANGES = "tuner.space_changes"  # what --allow-space-change let through, and when
ATTR_OBJECTIVES = "tuner.objectives"  # [[key, direction], ...] of a multi-objective study
ATTR_STOPPING = "tuner.stopping"  # the latest run's stopping rules, for `tuner worker`
ATTR_FINAL = "tuner.final"  # how the final model was chosen: trials, scores, optimism, reason
ATTR_BEST_RUN = "tuner.best_run"  # {"trial", "run", "parent"}: the MLflow run of the best trial
# Trial user attributes.
TRIAL_PARAMS = "params"  # every active parameter, fixed ones included
TRIAL_SEED = "seed"
TRIAL_REASON = "fail_reason"
TRIAL_INTERRUPTED = "interrupted"
TRIAL_GRID = "grid_point"
TRIAL_LOST = "lost"  # its worker stopped sending heartbeats (killed, host gone)
TRIAL_REQUEUED = "requeued"  # failed, but queued again with the same parameters
TRIAL_RETRY_OF = "retry_of"
TRIAL_CRASH_RETRIES = "crash_retries"  # lost trials are retried once
TRIAL_SURPLUS = "surplus"  # asked by a worker that lost a race: the budget's last slot, a random start's
TRIAL_BEST_EPOCH = "best_epoch"  # the epoch whose weights a trial kept (for `tuner evaluate`)
TRIAL_CV_VALUES = "cv_values"  # a cross-validated trial's value per fold
TRIAL_METRICS = "metrics"  # a multi-objective trial's final metrics (objectives and the rest)
TRIAL_CONSTRAINTS = "constraints"  # constraint violations, <= 0 is feasible
TRIAL_ENQUEUED = "enqueued"  # a known configuration, queued before the search
HEARTBEAT = "tuner:heartbeat"  # trial system attr: {"time", "host", "pid"}


@dataclass(frozen=True)
class StudyHandle:
    study: optuna.Study
    study_id: int
    storage: BaseStorage
    created: bool
    changes: tuple[str, ...] = ()  # space changes let through by allow_change


def default_study_name(space: Space, strategy: str, seed: int) -> str:
    return f"{space.name}-{strategy}-seed{seed}"


def open_study(storage: BaseStorage, name: str, space: Space, strategy: str, seed: int,
               sampler: optuna.samplers.BaseSampler,
               pruner: optuna.pruners.BasePruner, allow_change: bool = False) -> StudyHandle:
    """Load `name` if it exists (refusing a changed space or strategy unless `allow_change`),
    else create it."""
    existing = {s.study_name: s for s in storage.get_all_studies()}
    created = name not in existing
    changes: list[str] = []
    if not created:
        attrs = existing[name].user_attrs
        stored = attrs.get(ATTR_CANONICAL)
        if stored is not None and stored != space.canonical:
            changes = diff_spaces(json.loads(stored), json.loads(space.canonical))
            listed = f"{'; '.join(changes[:5])}{' ...' if len(changes) > 5 else ''}"
            if not allow_change:
                raise OptionError(
                    "study_name", f"study {name!r} was created from a different space "
                    f"({attrs.get(ATTR_SPACE_FILE, '?')}); changed: {listed}. Use another "
                    "{study_name} to start afresh, or {allow_space_change=True} to go on with it")
        for attr, wanted in ((ATTR_STRATEGY, strategy), (ATTR_SEED, seed)):
            if attr in attrs and attrs[attr] != wanted:
                raise OptionError("study_name", f"study {name!r} was run with "
                                  f"{attr.split('.')[1]} {attrs[attr]!r}, not {wanted!r}; use "
                                  "another {study_name}")
    directions: list[Any] = [o.direction for o in space.objectives]
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                pruner=pruner, directions=directions, load_if_exists=True)
    stored = [d.name.lower() for d in study.directions]
    if stored != directions:
        raise OptionError("study_name", f"study {name!r} optimises in direction(s) "
                          f"{', '.join(stored)}, the space says {', '.join(directions)}; an "
                          "Optuna study cannot change its objectives' directions (not even with "
                          "{allow_space_change=True}): use another {study_name}")
    if changes:
        _check_compatible(study, space)
        # Recorded with the study, so that its trials can be read against the right space.
        log = [*study.user_attrs.get(ATTR_SPACE_CHANGES, []), {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "from_hash": study.user_attrs.get(ATTR_HASH), "to_hash": space.hash,
            "changes": changes}]
        study.set_user_attr(ATTR_SPACE_CHANGES, log)
        for key, text in ((ATTR_SPACE_TEXT, space.text), (ATTR_SPACE_FILE, space.file),
                          (ATTR_HASH, space.hash), (ATTR_CANONICAL, space.canonical)):
            study.set_user_attr(key, text)
    if ATTR_CANONICAL not in study.user_attrs:
        for key, value in ((ATTR_SPACE_TEXT, space.text), (ATTR_SPACE_FILE, space.file),
                           (ATTR_HASH, space.hash), (ATTR_STRATEGY, strategy),
                           (ATTR_SEED, seed), (ATTR_CANONICAL, space.canonical)):
            study.set_user_attr(key, value)
        if space.multi:
            study.set_user_attr(ATTR_OBJECTIVES, [[o.key, o.direction] for o in space.objectives])
    study_id = storage.get_study_id_from_name(name)
    return StudyHandle(study, study_id, storage, created, tuple(changes))


@contextlib.contextmanager
def discard_if_unused(handle: StudyHandle) -> Iterator[None]:
    """Delete the study this run just created if the block fails before any trial started: a
    study left empty would refuse the next run with an edited space file."""
    try:
        yield
    except BaseException:
        if handle.created:
            with contextlib.suppress(Exception):  # the storage may be what failed
                trials = handle.storage.get_all_trials(handle.study_id, deepcopy=False)
                if all(t.state == TrialState.WAITING for t in trials):  # queued grid points
                    handle.storage.delete_study(handle.study_id)
        raise


def _check_compatible(study: optuna.Study, space: Space) -> None:
    """Optuna fixes a categorical parameter's choices (and every parameter's kind) once a trial
    has used it: such a change cannot be let through, whatever the flag says."""
    new = space.params.distributions()
    problems: list[str] = []
    seen: set[str] = set()
    for trial in study.get_trials(deepcopy=False):
        for name, old in trial.distributions.items():
            if name in seen or name not in new:
                continue
            seen.add(name)
            try:
                check_distribution_compatibility(old, new[name])
            except ValueError as exc:
                problems.append(f"{name}: {str(exc).rstrip('.')}")
    if problems:
        raise OptionError("study_name", f"study {study.study_name!r} cannot take this space "
                          "change, even with {allow_space_change=True}: "
                          f"{'; '.join(problems)}. Use another " "{study_name}")


def plan_budget(handle: StudyHandle, space: Space, strategy: str, seed: int,
                trials: int | None, pruner: str, notes: list[str]) -> int:
    """The run's trial budget; a grid's points are queued now. The budget and pruner are stored
    for `tuner worker`, which has no such flags."""
    if handle.changes:
        notes.append(f"space changed (--allow-space-change; recorded in the study): "
                     f"{'; '.join(handle.changes[:5])}")
    if strategy == "grid":
        target = space.params.grid_target(trials, space.file)  # counted, never built whole
        grid = space.params.indexed_grid()
        assert grid is not None  # grid_target refuses a grid it cannot count
        enqueue_grid(handle, grid, seed, target)
        if target < grid.size:
            notes.append(f"grid has {grid.size:,} points; this run covers a seeded random "
                         f"{target} of them (--trials)")
    else:
        target = trials or space.study.trials
    for key, value in ((ATTR_TRIALS, target), (ATTR_PRUNER, pruner)):
        if handle.study.user_attrs.get(key) != value:
            handle.study.set_user_attr(key, value)
    return target


def diff_spaces(old: Any, new: Any, path: str = "") -> list[str]:
    """Human-readable differences between two canonical space dicts."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"{sub} added")
            elif key not in new:
                out.append(f"{sub} removed")
            else:
                out.extend(diff_spaces(old[key], new[key], sub))
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


def uncounted(trial: FrozenTrial) -> bool:
    """A failed trial that does not use budget: interrupted or lost and re-queued, or surplus."""
    attrs = trial.user_attrs
    return trial.state == TrialState.FAIL and bool(
        attrs.get(TRIAL_INTERRUPTED) or attrs.get(TRIAL_REQUEUED) or attrs.get(TRIAL_SURPLUS))


def counted_trials(study: optuna.Study) -> int:
    """Trials that used up budget: finished ones, minus interrupted ones that were re-queued."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state.is_finished() and not uncounted(t))


def budget_slots(trials: list[FrozenTrial]) -> list[int]:
    """Numbers of the trials that hold a slot of the budget: counted ones and running ones."""
    return sorted(t.number for t in trials
                  if t.state == TrialState.RUNNING or (t.state.is_finished() and not uncounted(t)))


def retry_attrs(trial: FrozenTrial | optuna.Trial, lost: bool) -> dict[str, Any]:
    """User attributes of the queued retry of `trial`; a lost trial uses up one crash retry."""
    attrs: dict[str, Any] = {TRIAL_RETRY_OF: trial.number,
                             TRIAL_CRASH_RETRIES: int(trial.user_attrs.get(TRIAL_CRASH_RETRIES, 0))
                             + int(lost)}
    if trial.user_attrs.get(TRIAL_GRID) is not None:
        attrs[TRIAL_GRID] = trial.user_attrs[TRIAL_GRID]
    return attrs


def retry_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a retry must use: the queued ones (grid point, earlier retry) if any."""
    return queued_params(trial) or dict(trial.params)


def enqueue_grid(handle: StudyHandle, grid: Grid, seed: int, limit: int) -> int:
    """Queue grid points that the study has not seen yet, in a seeded random order, up to `limit`
    points in the study in total. Returns the number of grid points in the study afterwards."""
    study = handle.study
    # A grid trial keeps its point (the parameters it was queued with) until it ends.
    taken = {_key(queued_params(t)) for t in study.get_trials(deepcopy=False)
             if t.user_attrs.get(TRIAL_GRID) is not None and not uncounted(t)}
    in_study = len(taken)
    for index in _seeded_order(grid.size, seed):
        if in_study >= limit:
            break
        point = grid.point(index)
        key = _key(point)
        if key in taken:
            continue
        study.enqueue_trial(point, user_attrs={TRIAL_GRID: index}, skip_if_exists=False)
        taken.add(key)
        in_study += 1
    return in_study


def _seeded_order(size: int, seed: int) -> Iterator[int]:
    """Grid indices in a seeded random order: a shuffle of a grid that may run whole (the order
    of earlier versions), else seeded draws without repeats, so a sampled grid of 10^9 points
    costs what it samples. Either way a later run with a larger budget extends the same order."""
    rng = random.Random(seed)
    if size <= GRID_LIMIT:
        order = list(range(size))
        rng.shuffle(order)
        yield from order
        return
    drawn: set[int] = set()
    while len(drawn) < size:
        index = rng.randrange(size)
        if index not in drawn:
            drawn.add(index)
            yield index


def claim_waiting(handle: StudyHandle,
                  trials: list[FrozenTrial] | None = None) -> optuna.Trial | None:
    """Atomically take one queued trial (the storage refuses a trial that another worker took).
    `trials`: a recent snapshot of the study's trials, to save a read."""
    if trials is None:
        trials = handle.storage.get_all_trials(handle.study_id, deepcopy=False,
                                               states=(TrialState.WAITING,))
    for frozen in trials:
        if frozen.state != TrialState.WAITING:
            continue
        try:
            if set_state(handle.storage, trial_id(frozen), TrialState.RUNNING):
                return trial_of(handle.study, trial_id(frozen))
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps({k: params[k] for k in sorted(params)}, default=str)
