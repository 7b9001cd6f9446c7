"""Running one trial: sample parameters, train, report to the pruner, hand events to tracking."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna

from tuner._data import Dataset
from tuner._hparams import TrialConfig
from tuner._spec import Space
from tuner._strategies import trial_seed
from tuner._study import TRIAL_PARAMS, TRIAL_SEED
from tuner._training import Callback, FitResult, NonFiniteLoss, fit


class Interrupted(Exception):
    """The user asked the run to stop (SIGINT / SIGTERM); raised at the end of an epoch."""


@dataclass
class TrialOutcome:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL | INTERRUPTED
    params: dict[str, Any]
    seed: int
    value: float | None = None
    reason: str = ""
    epochs: int = 0
    best_epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    fit: FitResult | None = None
    seconds: float = 0.0


class _PruningReporter:
    def __init__(self, trial: optuna.Trial, key: str):
        self.trial = trial
        self.key = key

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        value = metrics[self.key]
        if not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} ({self.key}={value:.4g})")


class _StopCheck:
    def __init__(self, stop: threading.Event):
        self.stop = stop

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        if self.stop.is_set():
            raise Interrupted(f"interrupted after epoch {epoch}")


class _History:
    """Keeps the epochs seen, so a pruned or interrupted trial still reports how far it got."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.epochs.append(dict(metrics))


def run_trial(
    trial: optuna.Trial,
    space: Space,
    data: Dataset,
    study_seed: int,
    stop: threading.Event,
    prune: bool,
    start_tracking: Callable[[dict[str, Any]], Callback | None],
) -> tuple[TrialOutcome, Callback | None]:
    """Train one trial. Exceptions of the user's making become outcomes, not crashes."""
    started = time.perf_counter()
    params = space.params.suggest(trial)
    seed = trial_seed(study_seed, trial.number)
    trial.set_user_attr(TRIAL_PARAMS, params)
    trial.set_user_attr(TRIAL_SEED, seed)
    outcome = TrialOutcome(trial.number, "COMPLETE", dict(params), seed)
    run = start_tracking(params)
    history = _History()
    callbacks: list[Callback] = [history]
    if run is not None:
        callbacks.append(run)
    if prune:
        callbacks.append(_PruningReporter(trial, space.objective.key))
    callbacks.append(_StopCheck(stop))
    early = space.training.early_stopping
    try:
        result = fit(
            TrialConfig.from_params(params), data,
            max_epochs=space.training.max_epochs, early_stopping=early, seed=seed,
            callbacks=callbacks, monitor=space.objective.key,
            monitor_direction=space.objective.direction,
        )
    except optuna.TrialPruned as exc:
        outcome.state, outcome.reason = "PRUNED", str(exc)
    except NonFiniteLoss as exc:
        outcome.state, outcome.reason = "FAIL", str(exc)
        outcome.epochs = exc.epoch
    except Interrupted as exc:
        outcome.state, outcome.reason = "INTERRUPTED", str(exc)
    else:
        outcome.fit = result
        outcome.epochs, outcome.best_epoch = result.epochs_run, result.best_epoch
        outcome.metrics = result.best_metrics
        value = result.best_metrics.get(space.objective.key, math.nan)
        if math.isfinite(value):
            outcome.value = value
        else:
            outcome.state = "FAIL"
            outcome.reason = f"objective {space.objective.key} is {value}"
    if outcome.state != "COMPLETE":
        outcome.epochs = outcome.epochs or len(history.epochs)
        if history.epochs:
            outcome.metrics = history.epochs[-1]
    outcome.seconds = time.perf_counter() - started
    return outcome, run
