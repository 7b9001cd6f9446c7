"""Creating and resuming studies; the space a study was made from is stored with it."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from tuner._errors import TunerError
from tuner._spec import Space

# Study user attributes written by tuner.
ATTR_SPACE_TEXT = "tuner.space_text"
ATTR_SPACE_FILE = "tuner.space_file"
ATTR_CANONICAL = "tuner.space_canonical"
ATTR_HASH = "tuner.space_hash"
ATTR_STRATEGY = "tuner.strategy"
ATTR_SEED = "tuner.seed"
ATTR_PARENT_RUN = "tuner.mlflow_parent_run_id"
ATTR_EXPERIMENT = "tuner.mlflow_experiment_id"
# Trial user attributes.
TRIAL_PARAMS = "params"  # every active parameter, fixed ones included
TRIAL_SEED = "seed"
TRIAL_REASON = "fail_reason"
TRIAL_INTERRUPTED = "interrupted"
TRIAL_GRID = "grid_point"


@dataclass(frozen=True)
class StudyHandle:
    study: optuna.Study
    study_id: int
    storage: BaseStorage
    created: bool


def default_study_name(space: Space, strategy: str, seed: int) -> str:
    return f"{space.name}-{strategy}-seed{seed}"


def open_study(storage: BaseStorage, name: str, space: Space, strategy: str, seed: int,
               sampler: optuna.samplers.BaseSampler,
               pruner: optuna.pruners.BasePruner) -> StudyHandle:
    """Load `name` if it exists (refusing a changed space or strategy), else create it."""
    existing = {s.study_name: s for s in storage.get_all_studies()}
    created = name not in existing
    if not created:
        attrs = existing[name].user_attrs
        stored = attrs.get(ATTR_CANONICAL)
        if stored is not None and stored != space.canonical:
            changes = diff_spaces(json.loads(stored), json.loads(space.canonical))
            raise TunerError(
                f"study {name!r} was created from a different space "
                f"({attrs.get(ATTR_SPACE_FILE, '?')}); changed: {'; '.join(changes[:5])}"
                f"{' ...' if len(changes) > 5 else ''}. Use another --study name to start afresh")
        for attr, wanted in ((ATTR_STRATEGY, strategy), (ATTR_SEED, seed)):
            if attr in attrs and attrs[attr] != wanted:
                raise TunerError(f"study {name!r} was run with {attr.split('.')[1]} "
                                 f"{attrs[attr]!r}, not {wanted!r}; use another --study name")
    direction: Literal["maximize", "minimize"] = (
        "maximize" if space.objective.direction == "maximize" else "minimize")
    study = optuna.create_study(storage=storage, study_name=name, sampler=sampler,
                                pruner=pruner, direction=direction, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise TunerError(f"study {name!r} optimises in direction "
                         f"{study.direction.name.lower()}, the space says {direction}")
    if ATTR_CANONICAL not in study.user_attrs:
        for key, value in ((ATTR_SPACE_TEXT, space.text), (ATTR_SPACE_FILE, space.file),
                           (ATTR_HASH, space.hash), (ATTR_STRATEGY, strategy),
                           (ATTR_SEED, seed), (ATTR_CANONICAL, space.canonical)):
            study.set_user_attr(key, value)
    study_id = storage.get_study_id_from_name(name)
    return StudyHandle(study, study_id, storage, created)


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


def counted_trials(study: optuna.Study) -> int:
    """Trials that used up budget: finished ones, minus interrupted ones that were re-queued."""
    return sum(
        1 for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and not t.user_attrs.get(TRIAL_INTERRUPTED))
    )


def enqueue_grid(handle: StudyHandle, grid: list[dict[str, Any]], seed: int, limit: int) -> int:
    """Queue grid points that the study has not seen yet, in a seeded random order, up to `limit`
    points in the study in total. Returns the number of grid points in the study afterwards."""
    study = handle.study
    # A grid trial keeps its point in Optuna's "fixed_params" from enqueueing to the end.
    taken = {_key(t.system_attrs.get("fixed_params", {})) for t in study.get_trials(deepcopy=False)
             if t.user_attrs.get(TRIAL_GRID) is not None
             and not (t.state == TrialState.FAIL and t.user_attrs.get(TRIAL_INTERRUPTED))}
    order = list(range(len(grid)))
    random.Random(seed).shuffle(order)
    in_study = len(taken)
    for index in order:
        if in_study >= limit:
            break
        point = grid[index]
        key = _key(point)
        if key in taken:
            continue
        study.enqueue_trial(point, user_attrs={TRIAL_GRID: index}, skip_if_exists=False)
        taken.add(key)
        in_study += 1
    return in_study


def claim_waiting(handle: StudyHandle) -> optuna.Trial | None:
    """Atomically take one queued trial (the storage refuses a trial that another worker took)."""
    for frozen in handle.storage.get_all_trials(handle.study_id, deepcopy=False,
                                                states=(TrialState.WAITING,)):
        try:
            if handle.storage.set_trial_state_values(frozen._trial_id, state=TrialState.RUNNING):
                return optuna.Trial(handle.study, frozen._trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps({k: params[k] for k in sorted(params)}, default=str)
