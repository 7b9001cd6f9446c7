"""The run loop, the same in every mode (`tuner run` in one process, each local worker, each Dask
task, `tuner worker`, one objective or several): after each trial, check the stopping rules;
before each, reap the trials whose worker died; claim a queued trial or ask a new one within the budget; run
it; tell the study and MLflow; repeat.

`TrialSource` is the part that decides what runs next; `work` runs what it hands out, one trial
at a time.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import optuna

from tuner.execution._progress import StudyProgress
from tuner.execution._session import Session
from tuner.execution._trial import TrialOutcome
from tuner.search import counted_trials, next_trial, reap_stale, uncounted

_IDLE_POLL_S = 1.0


class TrialSource:
    """Hands out the trials this process should run next, until the study needs no more of it:
    the budget is used up and nothing is left running elsewhere, a stopping rule holds, `stop`
    is set, or `max_trials` were handed out (a Dask task runs one)."""

    def __init__(self, session: Session, stop: threading.Event, *,
                 progress: StudyProgress | None = None, max_trials: int | None = None):
        self.session = session
        self.stop = stop
        self.progress = progress
        self.max_trials = max_trials
        self.handed = 0

    def next(self) -> optuna.Trial | None:
        session, handle = self.session, self.session.handle
        waiting_for: int | None = None
        while not self.stop.is_set():
            if self.max_trials is not None and self.handed >= self.max_trials:
                return None
            # The rules are checked after each trial this process ran: a process that joins
            # runs at least one, as `--timeout` promises ("no trial starts after it").
            reason = session.rules.check(session.study) \
                if session.rules.active and self.handed else None
            if reason is not None:
                session.stats.stopped = reason
                return None
            trials = handle.storage.get_all_trials(handle.study_id, deepcopy=False)
            if reap_stale(handle, session.heartbeat_timeout, session.end_lost_run, trials):
                trials = handle.storage.get_all_trials(handle.study_id, deepcopy=False)
            trial, running = next_trial(handle, session.grid, session.target, trials)
            if trial is not None:
                self.handed += 1
                return trial
            if running == 0 or self.max_trials is not None:  # a Dask task: the client waits
                return None
            if self.progress is not None and waiting_for != running:
                self.progress.note(f"waiting for {running} trial(s) running elsewhere "
                                   "(retried here if their worker dies)")
            waiting_for = running
            self.stop.wait(min(_IDLE_POLL_S, session.heartbeat_timeout / 4))
        return None


def work(session: Session, stop: threading.Event, *, progress: StudyProgress | None = None,
         on_trial: Callable[[TrialOutcome], None] | None = None,
         max_trials: int | None = None) -> int:
    """Run trials of the session's study until it needs no more of this process (see
    `TrialSource`). Returns the number of trials run; a stopping rule that ended the loop is in
    `session.stats.stopped`."""
    source = TrialSource(session, stop, progress=progress, max_trials=max_trials)
    ran = 0
    while (trial := source.next()) is not None:
        outcome = session.run(trial, stop)
        ran += 1
        if on_trial is not None:
            on_trial(outcome)
        if progress is not None:
            show(session, progress)
    return ran


def show(session: Session, progress: StudyProgress) -> None:
    if progress.enabled:  # reads of the storage: not for nothing
        study = session.study
        trials = study.get_trials(deepcopy=False)
        best = None
        if not session.space.multi and any(t.state.name == "COMPLETE" for t in trials):
            best = float(study.best_value)
        pruned = sum(t.state.name == "PRUNED" for t in trials)
        failed = sum(t.state.name == "FAIL" and not uncounted(t) for t in trials)
        progress.update(counted_trials(study), best, pruned, failed)


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
