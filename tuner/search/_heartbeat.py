"""Heartbeats for running trials, on every storage, and the reaping of trials whose worker died.

Optuna's own heartbeat covers only RDB storages and only inside `study.optimize`; our loop is
ask/tell and the default storage is a journal. So a daemon thread writes a timestamp into the
running trial's system attributes every few seconds, and any process working on the study (a
worker between trials, the parent of parallel workers, the next run) fails a RUNNING trial whose
heartbeat is older than the timeout, queues it once more with the same parameters, and ends its
MLflow run FAILED. Timestamps are wall-clock seconds: hosts sharing a study need synchronised
clocks (NTP), and the timeout must be far larger than their skew.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import first_line
from tuner.search._optuna import set_state, trial_id
from tuner.search._study import (
    HEARTBEAT,
    TRIAL_CRASH_RETRIES,
    TRIAL_LOST,
    TRIAL_REASON,
    TRIAL_REQUEUED,
    StudyHandle,
    retry_attrs,
    retry_params,
)

MAX_CRASH_RETRIES = 1
_log = logging.getLogger("tuner")


def interval_for(timeout: float) -> float:
    """Beat often enough that a few missed beats (a slow storage call) do not look like death."""
    return min(10.0, max(0.2, timeout / 6))


class Heartbeat:
    """While open, records (time, host, pid) in the trial every `interval` s."""

    def __init__(self, handle: StudyHandle, trial_id: int, interval: float):
        self.handle = handle
        self.trial_id = trial_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tuner-heartbeat", daemon=True)
        self._failing = False

    def __enter__(self) -> Heartbeat:
        self.beat()  # before training: a claimed trial is never without a heartbeat
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)

    def beat(self) -> None:
        try:
            self.handle.storage.set_trial_system_attr(self.trial_id, HEARTBEAT, {
                "time": time.time(), "host": socket.gethostname(), "pid": os.getpid()})
            self._failing = False
        except UpdateFinishedTrialError:
            pass  # finished meanwhile (or reaped): the next beat is not needed
        except Exception as exc:  # the storage is down: say so once, then keep trying
            if not self._failing:
                _log.warning("cannot record the heartbeat of a running trial (%s); trying again "
                             "every %.0f s. If the storage does not come back, other workers "
                             "will declare this trial lost", first_line(exc), self.interval)
            self._failing = True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()


@dataclass(frozen=True)
class LostTrial:
    number: int
    reason: str
    retry: bool


def last_sign_of_life(trial: FrozenTrial) -> float:
    beat = trial.system_attrs.get(HEARTBEAT)
    if isinstance(beat, dict) and "time" in beat:
        return float(beat["time"])
    start = trial.datetime_start
    return start.timestamp() if start is not None else time.time()


def running_elsewhere(handle: StudyHandle) -> list[FrozenTrial]:
    return handle.storage.get_all_trials(handle.study_id, deepcopy=False,
                                         states=(TrialState.RUNNING,))


def reap_stale(handle: StudyHandle, timeout: float,
               end_run: Callable[[LostTrial], None] | None = None,
               trials: list[FrozenTrial] | None = None) -> list[LostTrial]:
    """Fail the RUNNING trials silent for more than `timeout` s; queue each once more.
    `trials`: a recent snapshot of the study's trials, to save a read."""
    now = time.time()
    lost: list[LostTrial] = []
    storage = handle.storage
    for trial in running_elsewhere(handle) if trials is None else trials:
        if trial.state != TrialState.RUNNING:
            continue
        silent = now - last_sign_of_life(trial)
        if silent <= timeout:
            continue
        beat = trial.system_attrs.get(HEARTBEAT) or {}
        where = f" (host {beat['host']}, pid {beat['pid']})" if "pid" in beat else ""
        retry = int(trial.user_attrs.get(TRIAL_CRASH_RETRIES, 0)) < MAX_CRASH_RETRIES
        reason = (f"worker lost: no heartbeat for {silent:.0f} s{where}; "
                  + ("queued again with the same parameters" if retry else "already retried once"))
        try:
            # Attributes first (a finished trial takes none), then the state change that only
            # one reaper can win: the losers get UpdateFinishedTrialError and leave it alone.
            storage.set_trial_user_attr(trial_id(trial), TRIAL_LOST, True)
            storage.set_trial_user_attr(trial_id(trial), TRIAL_REASON, reason)
            if retry:
                storage.set_trial_user_attr(trial_id(trial), TRIAL_REQUEUED, True)
            if not set_state(storage, trial_id(trial), TrialState.FAIL):
                continue
        except (UpdateFinishedTrialError, KeyError):
            continue
        if retry:
            handle.study.enqueue_trial(retry_params(trial), user_attrs=retry_attrs(trial, True),
                                       skip_if_exists=False)
        item = LostTrial(trial.number, reason, retry)
        lost.append(item)
        if end_run is not None:
            try:
                end_run(item)
            except Exception as exc:  # the study is consistent; the MLflow run is best effort
                _log.warning("trial %d was declared lost, but its MLflow run could not be ended "
                             "(%s)", item.number, first_line(exc))
    return lost
