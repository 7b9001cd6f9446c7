"""Stopping a whole study early: no improvement of the best value in `patience` trials, or a
wall-clock budget. Checked between trials, so the running trial always finishes and is recorded:
the study ends cleanly and can be extended later with the same command."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState


class Stopper:
    def __init__(self, patience: int | None, timeout: float | None, started: float):
        self.patience = patience
        self.timeout = timeout
        self.started = started
        self.reason: str | None = None  # set once the study was stopped on purpose

    def check(self, study: optuna.Study) -> str | None:
        if self.timeout is not None and time.perf_counter() - self.started >= self.timeout:
            return f"stopped: the --timeout of {self.timeout:g} s ran out"
        if self.patience is not None:
            since = trials_since_best(study)
            if since is not None and since >= self.patience:
                return (f"stopped: the best value did not improve in the last {since} trials "
                        f"(--patience {self.patience})")
        return None

    def watch(self, study: Callable[[], optuna.Study], stop: threading.Event,
              then: Callable[[Any], None] | None) -> Callable[[Any], None]:
        """An `on_trial` hook: call `then`, and set `stop` once a stopping rule holds."""
        def on_trial(outcome: Any) -> None:
            if then is not None:
                then(outcome)
            reason = self.check(study())
            if reason is not None and not stop.is_set():
                self.reason = reason
                stop.set()
        return on_trial


def trials_since_best(study: optuna.Study) -> int | None:
    """Finished trials after the one that set the best value (None: no complete trial)."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    best = max(complete, key=lambda t: (sign * (t.value or 0.0), -t.number))  # earliest tie
    return sum(t.number > best.number for t in trials)
