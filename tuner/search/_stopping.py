"""Stopping a whole study early: no improvement in `patience` trials, or a wall-clock budget.

The rules read only the study (its trials, in the storage) and a wall-clock deadline, so every
process working on a study (one process, local workers, Dask tasks, `tuner worker`) checks the
same rules between its trials and they all stop together. A running trial always finishes and is
recorded: the study ends cleanly and can be extended later with the same command.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.space import is_better


@dataclass(frozen=True)
class StoppingRules:
    patience: int | None = None  # finished trials after the last improvement
    timeout: float | None = None  # seconds, as the user gave them (for the message)
    deadline: float | None = None  # wall-clock time (time.time()) after which no trial starts

    @classmethod
    def starting_now(cls, patience: int | None, timeout: float | None) -> StoppingRules:
        return cls(patience, timeout, None if timeout is None else time.time() + timeout)

    def as_attr(self) -> dict[str, float | None]:
        return {"patience": self.patience, "timeout": self.timeout, "deadline": self.deadline}

    @classmethod
    def from_attr(cls, stored: object) -> StoppingRules:
        if not isinstance(stored, dict):
            return cls()
        patience = stored.get("patience")
        return cls(None if patience is None else int(patience), stored.get("timeout"),
                   stored.get("deadline"))

    @property
    def active(self) -> bool:
        return self.patience is not None or self.deadline is not None

    def check(self, study: optuna.Study) -> str | None:
        """Why the study should start no more trials (None: go on)."""
        if self.deadline is not None and time.time() >= self.deadline:
            return f"stopped: the --timeout of {self.timeout:g} s ran out"
        if self.patience is not None:
            since = trials_since_best(study)
            if since is not None and since >= self.patience:
                what = "the Pareto front did not change" if len(study.directions) > 1 \
                    else "the best value did not improve"
                return f"stopped: {what} in the last {since} trials (--patience {self.patience})"
        return None


def trials_since_best(study: optuna.Study) -> int | None:
    """Finished trials after the one that last improved the study (None: no complete trial).
    With several objectives, improving means joining the Pareto front."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    if not complete:
        return None
    if len(study.directions) > 1:
        last = max(t.number for t in _joined_front(study, complete))
    else:
        direction = study.direction.name.lower()
        best = None
        for trial in sorted(complete, key=lambda t: t.number):  # the earliest of equal values
            if best is None or is_better(direction, float(trial.values[0]), best.values[0]):
                best = trial
        assert best is not None
        last = best.number
    return sum(t.number > last for t in trials)


def _joined_front(study: optuna.Study, complete: list[FrozenTrial]) -> list[FrozenTrial]:
    """The front's trials that improved it when they came: no earlier trial is at least as good
    in every objective (a later trial that only ties with a front member changes nothing)."""
    directions = [d.name.lower() for d in study.directions]

    def covers(a: FrozenTrial, b: FrozenTrial) -> bool:
        return all(not is_better(d, y, x) for d, x, y in zip(directions, a.values, b.values,
                                                               strict=True))

    return [t for t in study.best_trials
            if not any(o.number < t.number and covers(o, t) for o in complete)]
