"""Looking up a stored study: by name (one message for a missing one, listing what is there),
its space, its best trial and the epoch whose weights that trial kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial

from tuner.errors import TunerError
from tuner.search._storage import describe, open_storage
from tuner.search._study import (
    ATTR_BEST_RUN,
    ATTR_FINAL,
    ATTR_PARENT_RUN,
    ATTR_SPACE_FILE,
    ATTR_SPACE_TEXT,
    TRIAL_BEST_EPOCH,
)
from tuner.space import Space, parse_space


def find_study(storage: str | BaseStorage | None, name: str,
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """The study `name` of a storage (a URL, None for the default journal, or an opened one)."""
    opened = storage if isinstance(storage, BaseStorage) else open_storage(storage)
    names = [s.study_name for s in opened.get_all_studies()]
    if name not in names:
        where = getattr(opened, "label", None) or describe(
            storage if isinstance(storage, str) else None)
        raise TunerError(f"no study {name!r} in {where}; studies: "
                         f"{', '.join(sorted(names)) or 'none'}")
    return optuna.load_study(study_name=name, storage=opened, sampler=sampler, pruner=pruner)


def stored_space(study: optuna.Study) -> Space:
    """The space a study was created from (stored with it by tuner)."""
    text = study.user_attrs.get(ATTR_SPACE_TEXT)
    if text is None:
        raise TunerError(f"study {study.study_name!r} was not created by tuner (no space stored "
                         "with it)")
    file = str(study.user_attrs.get(ATTR_SPACE_FILE, study.study_name))
    return parse_space(text, file=file, default_name=Path(file).stem)


def best_trial(study: optuna.Study) -> FrozenTrial:
    try:
        return study.best_trial
    except ValueError:
        raise TunerError(f"study {study.study_name!r} has no complete trial yet") from None


def best_run(study: optuna.Study, number: int) -> str | None:
    """The MLflow run of trial `number` as the study recorded it at its end (its best trial's),
    if that record still holds: the same trial, under the study's current parent run. None
    when it does not (a newer best, a study logged elsewhere since): then MLflow is asked."""
    noted = study.user_attrs.get(ATTR_BEST_RUN)
    if not isinstance(noted, dict) or noted.get("trial") != number:
        return None
    run, parent = noted.get("run"), study.user_attrs.get(ATTR_PARENT_RUN)
    holds = isinstance(run, str) and parent is not None and noted.get("parent") == parent
    return run if holds else None


def final_trial(study: optuna.Study) -> FrozenTrial:
    """The trial the study chose as its final configuration when it was finished (re-evaluation
    may choose another than the best; for an ensemble, its best member), else its best trial."""
    best = best_trial(study)
    chosen = (study.user_attrs.get(ATTR_FINAL) or {}).get("trials") or [best.number]
    if chosen[0] == best.number:
        return best
    found = [t for t in study.get_trials(deepcopy=False) if t.number == chosen[0]]
    return found[0] if found else best


def best_epoch(trial: Any, space: Space) -> int:
    """The epoch whose weights the trial kept (recorded by the trial; else its reports)."""
    recorded = trial.user_attrs.get(TRIAL_BEST_EPOCH)
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    values = trial.intermediate_values
    if values:
        pick = max if space.objective.direction == "maximize" else min
        return int(pick(values, key=lambda epoch: values[epoch]))
    return space.training.max_epochs
