"""Which trial this process runs next: `TrialSource` hands out claimed trials (a queued one, or a
newly asked one within the budget) until the study needs no more of this process. The run loop
(`work`) and the packed executor (`work_packed`) both pull from it."""

from __future__ import annotations

import threading

import optuna

from tuner.execution._progress import StudyProgress
from tuner.execution._session import Session
from tuner.search import next_trial, reap_stale

_IDLE_POLL_S = 0.25  # a worker waiting for the sampler (`asking_room`) waits a trial, not more


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

    def next(self, wait: bool = True) -> optuna.Trial | None:
        """The next trial to run, or None. With the budget used up, or the sampler waiting for
        trials running elsewhere (`asking_room`: TPE's random start, NSGA-II's generation), it
        waits for them (they come back to the queue if their worker dies), unless `wait` is
        False (a pack of this process is training: it asks again after the next epoch)."""
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
            running -= session.open_trials  # this process's own (a pack's) are not awaited
            if running <= 0 or not wait or self.max_trials is not None:  # Dask: the client waits
                return None
            if self.progress is not None and waiting_for != running:
                self.progress.note(f"waiting for {running} trial(s) running elsewhere (the "
                                   "sampler needs their results, or they are retried here if "
                                   "their worker dies)")
            waiting_for = running
            self.stop.wait(min(_IDLE_POLL_S, session.heartbeat_timeout / 4))
        return None
