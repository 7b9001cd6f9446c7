"""One process's work on one study: what it needs to run a trial (the space, the data, the
study, the trial seeds) and the collaborators that deal with an outcome: the `Recorder` tells the
study, `StudyRuns` writes MLflow. Every mode builds one of these: `tuner run` in its own process,
each local worker process, each Dask task, `tuner worker`."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError

from tuner.data import Dataset
from tuner.execution._record import Recorder
from tuner.execution._runs import StudyRuns
from tuner.execution._trial import TrialOutcome, run_trial
from tuner.execution._warn import warn_failure
from tuner.search import (
    Heartbeat,
    LostTrial,
    StoppingRules,
    StudyHandle,
    interval_for,
    trial_id,
)
from tuner.space import Space, is_better
from tuner.tracking import TrialRun


@dataclass
class SessionStats:
    """What this process did, for the study's result (workers send theirs to the parent)."""

    ran: int = 0
    trials_s: float = 0.0  # the trials' durations, summed (a pack's overlap)
    training_s: float = 0.0  # wall time spent training (one trial or one pack at a time)
    tracking_s: float = 0.0  # MLflow time on the trials' critical path
    storage_s: float = 0.0  # storage time of worker processes, reported at their end
    stopped: str | None = None  # the stopping rule that ended this process's loop

    def add(self, other: dict[str, Any]) -> None:
        self.trials_s += float(other.get("trials_s", 0.0))
        self.training_s += float(other.get("training_s", 0.0))
        self.tracking_s += float(other.get("tracking_s", 0.0))
        self.storage_s += float(other.get("storage_s", 0.0))
        self.stopped = self.stopped or other.get("stopped")


@dataclass
class OpenTrial:
    """A trial this process runs: its heartbeat beats until it is finished."""

    trial: optuna.Trial
    heartbeat: Heartbeat
    started: float
    run: TrialRun | None = None


@dataclass
class Session:
    space: Space
    handle: StudyHandle
    data: Dataset
    seed: int
    strategy: str
    target: int  # the trial budget
    prune: bool
    runs: StudyRuns | None = None
    heartbeat_timeout: float = 60.0
    rules: StoppingRules = field(default_factory=StoppingRules)
    stats: SessionStats = field(default_factory=SessionStats)
    # The best complete trial trained in this process (one objective): its model is kept, so the
    # study's final model needs no retraining when it was trained here.
    best: TrialOutcome | None = field(default=None, init=False)
    pack: int | None = 1  # trials trained at once (None: sized automatically; 1: one at a time)
    device: str = "cpu"  # where trials train (a resolved torch device)
    _open: dict[int, OpenTrial] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.recorder = Recorder(self.handle, self.space.multi, self.heartbeat_timeout)
        self._storage_base = float(getattr(self.handle.storage, "seconds", 0.0))

    @property
    def study(self) -> optuna.Study:
        return self.handle.study

    @property
    def grid(self) -> bool:
        return self.strategy == "grid"

    def twin(self) -> Session:
        """The same study, data and tracking with a trial state of its own (a Dask thread)."""
        return Session(self.space, self.handle, self.data, self.seed, self.strategy, self.target,
                       self.prune, self.runs, self.heartbeat_timeout, self.rules,
                       pack=self.pack, device=self.device)

    def run(self, trial: optuna.Trial, stop: threading.Event) -> TrialOutcome:
        """Train `trial` while its heartbeat beats, record its outcome, end its MLflow run."""
        opened = self.begin(trial)
        try:
            outcome, _ = run_trial(trial, self.space, self.data, self.seed, stop, self.prune,
                                   lambda params: self.start_run(opened, params), self.device)
        except UpdateFinishedTrialError:  # reaped as lost while it trained (a long stall)
            outcome = TrialOutcome(trial.number, "LOST", {}, 0,
                                   seconds=time.perf_counter() - opened.started)
        return self.finish(opened, outcome)

    @property
    def open_trials(self) -> int:
        """Trials this process has begun and not finished (a pack's, those waiting for one)."""
        return len(self._open)

    def begin(self, trial: optuna.Trial) -> OpenTrial:
        """A trial this process starts: its heartbeat beats from now until `finish`."""
        heartbeat = Heartbeat(self.handle, trial_id(trial), interval_for(self.heartbeat_timeout))
        opened = OpenTrial(trial, heartbeat, time.perf_counter())
        heartbeat.__enter__()
        self._open[trial.number] = opened
        return opened

    def finish(self, opened: OpenTrial, outcome: TrialOutcome) -> TrialOutcome:
        """Record the trial's outcome in the study, keep its model if it is the best so far,
        end its MLflow run."""
        try:
            self.stats.trials_s += outcome.seconds
            self.stats.training_s += outcome.training_s
            self.stats.ran += 1
            self.recorder.record(opened.trial, outcome)
        finally:
            opened.heartbeat.__exit__(None, None, None)
        if outcome.state == "COMPLETE" and not self.space.multi and outcome.value is not None:
            with self._lock:
                if self.best is None or is_better(self.space.objective.direction,
                                                  outcome.value, self.best.value):
                    if outcome.fit is not None and self.device != "cpu":
                        outcome.fit.model.cpu()  # the study's final model is used on the CPU
                    self.best = outcome
        if opened.run is not None and self.runs is not None:
            self._timed(self.runs.finish_trial, opened.run, outcome)
        self._open.pop(opened.trial.number, None)
        return outcome

    def start_run(self, opened: OpenTrial, params: dict[str, Any]) -> TrialRun | None:
        if self.runs is None:
            return None
        opened.run = self._timed(self.runs.start_trial, opened.trial, params)
        return opened.run

    def _timed(self, fn: Any, *args: Any) -> Any:
        tracker = self.runs.tracker if self.runs is not None else None
        before = tracker.seconds if tracker is not None else 0.0
        try:
            return fn(*args)
        finally:
            if tracker is not None:
                self.stats.tracking_s += tracker.seconds - before

    def abort(self, killed: bool) -> None:
        """An exception or a second Ctrl-C: the open trials are failed and queued again, their
        runs ended. If the storage is gone, they stay RUNNING and their heartbeats reap them."""
        opened_trials, self._open = list(self._open.values()), {}
        for opened in opened_trials:
            opened.heartbeat.__exit__(None, None, None)
            try:
                self.recorder.abort(opened.trial)
            except Exception as exc:
                warn_failure(f"trial {opened.trial.number} could not be queued again", exc)
            if opened.run is not None and self.runs is not None:
                try:
                    self.runs.abort_trial(opened.run, killed)
                except Exception as exc:
                    warn_failure(f"the MLflow run of trial {opened.trial.number} could not be "
                                 "ended", exc)

    def end_lost_run(self, lost: LostTrial) -> None:
        if self.runs is not None:
            self.runs.end_lost(lost)

    def storage_seconds(self) -> float:
        """Storage time of this process since the session began."""
        return float(getattr(self.handle.storage, "seconds", 0.0)) - self._storage_base

    def report(self) -> dict[str, Any]:
        """What a worker sends back to the parent; its MLflow writes are all done by then."""
        if self.runs is not None:
            self.runs.tracker.flush()
        return {"ran": self.stats.ran, "trials_s": self.stats.trials_s,
                "training_s": self.stats.training_s,
                "tracking_s": self.stats.tracking_s, "storage_s": self.storage_seconds(),
                "stopped": self.stats.stopped}
