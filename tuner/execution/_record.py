"""Recording a trial's outcome in its study: told complete (its value, or its values with several
objectives), pruned or failed; an interrupted trial is failed and queued again with the same
parameters (it does not use budget); a trial that another process declared lost keeps the
outcome that process gave it."""

from __future__ import annotations

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tuner.execution._trial import TrialOutcome
from tuner.search import (
    TRIAL_INTERRUPTED,
    TRIAL_METRICS,
    TRIAL_REASON,
    StudyHandle,
    retry_attrs,
    retry_params,
    trial_id,
)


class Recorder:
    def __init__(self, handle: StudyHandle, multi: bool, heartbeat_timeout: float):
        self.handle = handle
        self.multi = multi
        self.heartbeat_timeout = heartbeat_timeout

    def record(self, trial: optuna.Trial, outcome: TrialOutcome) -> None:
        """Tell the study; `outcome.state` becomes LOST if another process failed the trial
        meanwhile (its retry runs as a new trial, so the study holds one outcome per trial)."""
        study = self.handle.study
        try:
            if outcome.state == "LOST":
                raise UpdateFinishedTrialError("failed by another process")
            if outcome.reason:
                trial.set_user_attr(TRIAL_REASON, outcome.reason)
            if outcome.state == "COMPLETE" and self.multi:
                trial.set_user_attr(TRIAL_METRICS, outcome.metrics)
                study.tell(trial, outcome.values)
            elif outcome.state == "COMPLETE":
                study.tell(trial, outcome.value)
            elif outcome.state == "PRUNED":
                study.tell(trial, state=TrialState.PRUNED)
            elif outcome.state == "INTERRUPTED":
                trial.set_user_attr(TRIAL_INTERRUPTED, True)
                self.requeue(trial)
            else:
                study.tell(trial, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            if not self.handle.storage.get_trial(trial_id(trial)).state.is_finished():
                raise
            outcome.state = "LOST"
            outcome.reason = (f"declared lost by another process (no heartbeat for over "
                              f"{self.heartbeat_timeout:.0f} s); its retry runs as a new trial")

    def abort(self, trial: optuna.Trial) -> None:
        """An exception or a second Ctrl-C while `trial` ran: fail it and queue it again."""
        trial.set_user_attr(TRIAL_INTERRUPTED, True)
        trial.set_user_attr(TRIAL_REASON, "aborted")
        self.requeue(trial)

    def requeue(self, trial: optuna.Trial) -> None:
        """Fail `trial` and queue it again: the next run starts with the same parameters (a
        grid point stays the same point, so the grid is still run exactly once)."""
        frozen = self.handle.storage.get_trial(trial_id(trial))
        self.handle.study.tell(trial, state=TrialState.FAIL)
        self.handle.study.enqueue_trial(retry_params(frozen),
                                        user_attrs=retry_attrs(frozen, lost=False),
                                        skip_if_exists=False)
