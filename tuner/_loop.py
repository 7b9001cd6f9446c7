"""The worker loop shared by `tuner run`, local worker processes, `tuner worker` and Dask tasks:
reap trials whose worker died, claim a queued trial or ask a new one within the budget, run it.

The budget counts finished trials (less the re-queued ones) and running ones, so several workers
stop together at the budget; a worker with nothing left to start waits for the trials running
elsewhere, because if their worker dies they come back to the queue for it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner._heartbeat import reap_stale
from tuner._progress import StudyProgress
from tuner._study import (
    TRIAL_REASON,
    TRIAL_SURPLUS,
    StudyHandle,
    budget_slots,
    claim_waiting,
    counted_trials,
)

if TYPE_CHECKING:
    from tuner._objective import TrialOutcome
    from tuner._runner import _Session

_IDLE_POLL_S = 1.0


def next_trial(handle: StudyHandle, grid: bool, target: int,
               trials: list[FrozenTrial]) -> tuple[optuna.Trial | None, int]:
    """A queued trial, else a new one while the budget allows (`trials`: the study's trials a
    moment ago). With no trial to start, the number of trials running elsewhere (0: the study
    is done for this worker)."""
    trial = claim_waiting(handle, trials)
    if trial is not None:
        return trial, 0
    running = sum(t.state == TrialState.RUNNING for t in trials)
    if grid or len(budget_slots(trials)) >= target:
        return None, running
    trial = handle.study.ask()
    if _surplus(handle, trial, target):
        return None, running + 1
    return trial, 0


def study_done(handle: StudyHandle, grid: bool, target: int) -> bool:
    """Nothing queued, nothing running, and the budget used up: no worker is needed."""
    trials = handle.storage.get_all_trials(handle.study_id, deepcopy=False)
    if any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials):
        return False
    return grid or len(budget_slots(trials)) >= target


def _surplus(handle: StudyHandle, trial: optuna.Trial, target: int) -> bool:
    """Two workers may both see one free slot and both ask; the later trial number gives way."""
    slots = budget_slots(handle.storage.get_all_trials(handle.study_id, deepcopy=False))
    if trial.number in slots[:target]:
        return False
    trial.set_user_attr(TRIAL_SURPLUS, True)
    trial.set_user_attr(TRIAL_REASON, "surplus: another worker took the budget's last slot")
    handle.study.tell(trial, state=TrialState.FAIL)
    return True


def work(session: _Session, target: int, stop: threading.Event, *,
         progress: StudyProgress | None = None,
         on_trial: Callable[[TrialOutcome], None] | None = None,
         max_trials: int | None = None) -> int:
    """Run trials of the session's study until the budget is used up or `stop` is set.
    Returns the number of trials this call ran."""
    handle = session.handle
    ran = 0
    waiting_for: int | None = None
    while not stop.is_set() and (max_trials is None or ran < max_trials):
        trials = handle.storage.get_all_trials(handle.study_id, deepcopy=False)
        if reap_stale(handle, session.heartbeat_timeout, session.end_lost_run, trials):
            trials = handle.storage.get_all_trials(handle.study_id, deepcopy=False)
        trial, running = next_trial(handle, session.strategy == "grid", target, trials)
        if trial is None:
            if running == 0 or max_trials is not None:  # a Dask task: the client waits instead
                break
            if progress is not None and waiting_for != running:
                progress.note(f"waiting for {running} trial(s) running elsewhere "
                              "(retried here if their worker dies)")
            waiting_for = running
            stop.wait(min(_IDLE_POLL_S, session.heartbeat_timeout / 4))
            continue
        waiting_for = None
        outcome = session.run(trial, stop)
        ran += 1
        if on_trial is not None:
            on_trial(outcome)
        if progress is not None:
            show(session, progress)
    return ran


def show(session: _Session, progress: StudyProgress) -> None:
    if progress.enabled:  # three reads of the storage: not for nothing
        progress.update(counted_trials(session.study), session.best_value(),
                        *session.pruned_failed())


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, progress: StudyProgress | None,
                    forward: Callable[[], None] | None = None) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the current epoch, record the trial, stop. Second: abort.
    `forward` passes each signal on (to worker processes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if forward is not None:
            forward()
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if progress is not None:
            progress.note(f"{signal.Signals(signum).name}: stopping at the end of this epoch "
                          "(again to abort)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
