"""Which trial a worker runs next: a queued one (a grid point, a known configuration, a retry)
if any, else a newly asked one while the budget allows and the sampler would not draw it at
random for want of the trials running (`asking_room`).

The budget counts finished trials (less the re-queued ones) and running ones, so several workers
stop together at the budget; a worker with nothing left to start waits for the trials running
elsewhere, because if their worker dies they come back to the queue for it.
"""

from __future__ import annotations

import copy

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.search._asking import asking_rule
from tuner.search._study import TRIAL_REASON, TRIAL_SURPLUS, StudyHandle, budget_slots, claim_waiting


def next_trial(handle: StudyHandle, grid: bool, target: int,
               trials: list[FrozenTrial]) -> tuple[optuna.Trial | None, int]:
    """A queued trial, else a new one while the budget and `asking_room` allow (`trials`: the
    study's trials a moment ago). With no trial to start, the number of trials running
    elsewhere (0: the study is done for this worker)."""
    trial = claim_waiting(handle, trials)
    if trial is not None:
        return trial, 0
    running = sum(t.state == TrialState.RUNNING for t in trials)
    if grid or len(budget_slots(trials)) >= target or asking_room(handle, trials) == 0:
        return None, running
    trial = handle.study.ask()
    if _surplus(handle, trial, target):
        return None, running + 1
    return trial, 0


def asking_room(handle: StudyHandle, trials: list[FrozenTrial]) -> int | None:
    """How many new trials the study's sampler may be asked for now (None: no limit): none
    while the trials running would complete TPE's or GP's random start (the next is then the
    model's choice) or NSGA-II's generation (the next is then bred from it). With a pack or
    several workers, trials would otherwise be asked before those are told, and drawn at random
    too, or from the generation before."""
    rule = asking_rule(handle.study.sampler)
    return None if rule is None else rule.room(trials)


def study_done(handle: StudyHandle, grid: bool, target: int) -> bool:
    """Nothing queued, nothing running, and the budget used up: no worker is needed."""
    trials = handle.storage.get_all_trials(handle.study_id, deepcopy=False)
    if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
        return False
    return grid or len(budget_slots(trials)) >= target


def _surplus(handle: StudyHandle, trial: optuna.Trial, target: int) -> bool:
    """Two workers may both see one free slot, or the last room before the sampler's model
    starts (`asking_room`), and both ask: the later trial number gives way (failed, not
    counted; the worker asks again later)."""
    trials = handle.storage.get_all_trials(handle.study_id, deepcopy=False)
    if trial.number not in budget_slots(trials)[:target]:
        reason = "another worker took the budget's last slot"
    elif asking_room(handle, _as_when_asked(trials, trial.number)) == 0:
        reason = ("another worker's trial completes what the sampler waits for (its random "
                  "start, or NSGA-II's generation)")
    else:
        return False
    trial.set_user_attr(TRIAL_SURPLUS, True)
    trial.set_user_attr(TRIAL_REASON, f"surplus: {reason}")
    handle.study.tell(trial, state=TrialState.FAIL)
    return True


def _as_when_asked(trials: list[FrozenTrial], number: int) -> list[FrozenTrial]:
    """The trials before trial `number` as they were when it was asked: one finished since was
    running then (a short trial elsewhere may finish between this worker's ask and its look;
    the sampler drew for the trial asked, in between, without it)."""
    asked = next((t.datetime_start for t in trials if t.number == number), None)
    before = []
    for trial in trials:
        if trial.number >= number:
            continue
        if asked is not None and trial.datetime_complete is not None and \
                trial.datetime_complete > asked:
            trial = copy.copy(trial)
            trial.state = TrialState.RUNNING
        before.append(trial)
    return before
