"""Every use of Optuna beyond its public API, in one place.

tuner claims queued trials itself (several workers, one budget), re-queues a trial with the
parameters it was queued with, and finds a trial's storage id; Optuna offers no public call for
these. tests/test_optuna_internals.py pins each behaviour, so an Optuna upgrade that changes one
fails there, loudly, and this file is the one to mend.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (its `number` counts within the study, the id within the
    storage)."""
    return int(trial._trial_id)


def trial_of(study: Study, trial_id: int) -> optuna.Trial:
    """A live `Trial` on a trial that is RUNNING in the storage (claimed here, not asked)."""
    return optuna.Trial(study, trial_id)


def set_state(storage: BaseStorage, trial_id: int, state: TrialState) -> bool:
    """Change a trial's state in one storage call. Moving a WAITING trial to RUNNING is atomic: of
    several processes, one gets True; a finished trial raises UpdateFinishedTrialError."""
    return bool(storage.set_trial_state_values(trial_id, state=state))


def queued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a trial was queued with (`enqueue_trial`), which Optuna keeps in the trial
    until it ends; empty for a sampled trial."""
    return dict(trial.system_attrs.get("fixed_params") or {})
