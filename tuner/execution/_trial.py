"""Running one trial: sample its parameters, train (the built-in MLP, its cross-validation folds,
or a custom trainer), report to the pruner, hand per-epoch events to tracking. What the user's
data or trainer does wrong becomes the trial's outcome (failed, with the reason), not a crash."""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.exceptions import UpdateFinishedTrialError

from tuner.data import Dataset
from tuner.errors import TunerError, first_line
from tuner.search import (
    TRIAL_BEST_EPOCH,
    TRIAL_CONSTRAINTS,
    TRIAL_CV_VALUES,
    TRIAL_PARAMS,
    TRIAL_SEED,
    trial_seed,
)
from tuner.space import Space
from tuner.training import (
    Callback,
    FitResult,
    ModelTooLarge,
    NonFiniteLoss,
    Reporter,
    final_metrics,
    latency_ms_per_1k,
    parameter_count,
    resolve,
    train,
)


class Interrupted(Exception):
    """The user asked the run to stop (SIGINT / SIGTERM); raised at the end of an epoch."""


@dataclass
class TrialOutcome:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL | INTERRUPTED | LOST
    params: dict[str, Any]
    seed: int
    value: float | None = None
    reason: str = ""
    epochs: int = 0
    best_epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    fit: FitResult | None = None
    seconds: float = 0.0
    values: list[float] | None = None  # one per objective (multi-objective spaces)
    training_s: float = 0.0  # of `seconds`, the time spent training


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


class _Prefixed:
    """Hands a fold's per-epoch metrics on under `fold<i>_` names (one curve per fold)."""

    def __init__(self, callback: Callback, prefix: str):
        self.callback = callback
        self.prefix = prefix

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.callback.on_epoch_end(epoch, {f"{self.prefix}{k}": v for k, v in metrics.items()})


@dataclass
class Prepared:
    """A trial between being asked and being concluded: its parameters and seed (recorded in
    the study), its outcome so far, its tracking run and callbacks once it is opened."""

    trial: optuna.Trial
    params: dict[str, Any]
    seed: int
    outcome: TrialOutcome
    started: float
    history: _History = field(default_factory=_History)
    run: Callback | None = None
    callbacks: list[Callback] = field(default_factory=list)


def prepare_trial(trial: optuna.Trial, space: Space, study_seed: int) -> Prepared:
    """Sample the trial's parameters and derive its seed; both are recorded in the study."""
    started = time.perf_counter()
    params = space.params.suggest(trial)
    seed = trial_seed(study_seed, trial.number)
    trial.set_user_attr(TRIAL_PARAMS, params)
    trial.set_user_attr(TRIAL_SEED, seed)
    return Prepared(trial, params, seed, TrialOutcome(trial.number, "COMPLETE", dict(params), seed),
                    started)


def open_trial(prepared: Prepared, space: Space, stop: threading.Event, prune: bool,
               start_tracking: Callable[[dict[str, Any]], Callback | None]) -> list[Callback]:
    """Start the trial's tracking run; its per-epoch callbacks (history, tracking, pruning,
    the stop flag) in the order they run."""
    prepared.run = start_tracking(prepared.params)
    pruning: list[Callback] = [_PruningReporter(prepared.trial, space.objective.key)] \
        if prune else []
    prepared.callbacks = [prepared.history, *([prepared.run] if prepared.run else []), *pruning,
                          _StopCheck(stop)]
    return prepared.callbacks


def run_trial(
    trial: optuna.Trial,
    space: Space,
    data: Dataset,
    study_seed: int,
    stop: threading.Event,
    prune: bool,
    start_tracking: Callable[[dict[str, Any]], Callback | None],
    device: Any = None,
) -> tuple[TrialOutcome, Callback | None]:
    """Train one trial. Exceptions of the user's making become outcomes, not crashes."""
    prepared = prepare_trial(trial, space, study_seed)
    callbacks = open_trial(prepared, space, stop, prune, start_tracking)
    outcome, seed = prepared.outcome, prepared.seed
    error: Exception | None = None
    result: FitResult | None = None
    started = time.perf_counter()
    try:
        if space.model == "custom":
            _run_custom(space, prepared.params, seed, trial.number, outcome,
                        callbacks=tuple(callbacks))
        elif data.folds:
            _cross_validate(trial, space, data, prepared, device)
        else:
            result = train(space, prepared.params, data, seed, callbacks=callbacks,
                           device=device)
    except (optuna.TrialPruned, NonFiniteLoss, ModelTooLarge, TrainerFailed, Interrupted) as exc:
        error = exc
    outcome.training_s = time.perf_counter() - started
    return close_trial(prepared, space, data, result, error), prepared.run


def close_trial(prepared: Prepared, space: Space, data: Dataset, result: FitResult | None,
                error: Exception | None) -> TrialOutcome:
    """The trial's outcome from what training gave: `result` (the built-in MLP's), or the
    exception that stopped it; other exceptions than pruning, a non-finite loss and an
    interruption are not the user's trial's doing and are raised."""
    trial, outcome = prepared.trial, prepared.outcome
    try:
        if error is not None:
            raise error
        if result is not None:
            outcome.fit = result
            outcome.epochs, outcome.best_epoch = result.epochs_run, result.best_epoch
            outcome.metrics = result.best_metrics
            outcome.value = result.best_metrics.get(space.objective.key, math.nan)
        _measure_extras(space, data, outcome)
        if space.multi:
            outcome.values = [outcome.metrics.get(o.key, math.nan) for o in space.objectives]
            if not all(math.isfinite(v) for v in outcome.values):
                outcome.value = math.nan
    except optuna.TrialPruned as exc:
        outcome.state, outcome.reason = "PRUNED", str(exc)
    except NonFiniteLoss as exc:
        outcome.state, outcome.reason = "FAIL", str(exc)
        outcome.epochs = exc.epoch
    except (TrainerFailed, ModelTooLarge) as exc:  # that trial fails, the study goes on
        outcome.state, outcome.reason = "FAIL", str(exc)
    except Interrupted as exc:
        outcome.state, outcome.reason = "INTERRUPTED", str(exc)
    else:
        value = outcome.value if outcome.value is not None else math.nan
        if math.isfinite(value):
            # `tuner evaluate` retrains for as many epochs as gave the kept weights.
            trial.set_user_attr(TRIAL_BEST_EPOCH, outcome.best_epoch)
            _constrain(trial, space, outcome.metrics)
        else:
            outcome.state, outcome.value = "FAIL", None
            outcome.reason = f"objective {space.objective.key} is {value}"
    history = prepared.history
    if outcome.state != "COMPLETE":
        outcome.value = None
        outcome.epochs = outcome.epochs or len(history.epochs)
        if history.epochs:
            outcome.metrics = history.epochs[-1]
    outcome.seconds = time.perf_counter() - prepared.started
    return outcome


def _run_custom(space: Space, params: Mapping[str, Any], seed: int, number: int,
                outcome: TrialOutcome, callbacks: tuple[Callback, ...]) -> None:
    trainer = resolve(space.hash, space.trainer, Path(space.file).parent)
    early = space.training.early_stopping
    reporter = Reporter(space.objective.key, space.objective.direction,
                        max_epochs=space.training.max_epochs,
                        patience=early.patience if early else None,
                        min_delta=early.min_delta if early else 0.0, seed=seed,
                        trial_number=number, callbacks=callbacks)
    try:
        returned = trainer(dict(params), reporter)
        outcome.metrics = final_metrics(returned, reporter)
    except (optuna.TrialPruned, Interrupted, UpdateFinishedTrialError):
        raise  # pruned, stopped by the user, or reaped as lost: not the trainer's failure
    except Exception as exc:
        raise TrainerFailed(exc) from exc
    outcome.value = outcome.metrics[space.objective.key]
    outcome.epochs, outcome.best_epoch = reporter.epochs, reporter.best_epoch


class TrainerFailed(Exception):
    """A custom trainer raised: its one-line summary, and where in the user's code."""

    def __init__(self, exc: BaseException):
        summary = first_line(exc) if isinstance(exc, TunerError) \
            else f"the trainer raised {type(exc).__name__}: {first_line(exc)}"
        # Where it happened: the innermost frame outside tuner (the trainer, or what it called).
        ours = str(Path(__file__).resolve().parents[1])
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if not str(Path(f.filename).resolve()).startswith(ours)]
        where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno} in " \
                f"{frames[-1].name})" if frames else ""
        super().__init__(f"{summary}{where}")


def _constrain(trial: optuna.Trial, space: Space, metrics: Mapping[str, float]) -> None:
    """Optuna 5's constrained samplers read `set_constraint` values (<= 0: feasible); the list
    is also kept as a user attr, for `tuner best` to mark infeasible front members."""
    if not space.constraints:
        return
    violations = [c.violation(metrics) for c in space.constraints]
    for constraint, violation in zip(space.constraints, violations, strict=True):
        trial.set_constraint(constraint.key, violation)
    trial.set_user_attr(TRIAL_CONSTRAINTS, violations)


def _measure_extras(space: Space, data: Dataset, outcome: TrialOutcome) -> None:
    """`params` (trainable parameters) and `latency` (ms per 1,000 rows, median of a few
    timed passes on this machine) for MLP objectives that ask for them."""
    keys = {o.key for o in space.objectives} | {c.key for c in space.constraints}
    if outcome.fit is None or not keys & {"params", "latency"}:
        return
    model = outcome.fit.model
    outcome.metrics["params"] = float(parameter_count(model))
    if "latency" in keys:
        outcome.metrics["latency"] = latency_ms_per_1k(model, data.val.x)


def _cross_validate(trial: optuna.Trial, space: Space, data: Dataset, prepared: Prepared,
                    device: Any) -> None:
    """k folds, one after the other; the objective is the mean of the folds' best values.

    Only the first fold reports to the pruner: every trial's first fold sees the same rows, so
    its epochs compare across trials. Each fold's curves are logged as `fold<i>_...`, its best
    value as step i of `cv_<objective>`."""
    params, seed, outcome = prepared.params, prepared.seed, prepared.outcome
    run, history = prepared.run, prepared.history
    pruning = [c for c in prepared.callbacks if isinstance(c, _PruningReporter)]
    stop_check = [c for c in prepared.callbacks if isinstance(c, _StopCheck)]
    key = space.objective.key
    values: list[float] = []
    bests: list[dict[str, float]] = []
    best_epochs: list[int] = []
    for i, fold in enumerate(data.folds):
        callbacks: list[Callback] = [history] if i == 0 else []
        if run is not None:
            callbacks.append(_Prefixed(run, f"fold{i}_"))
        callbacks += [*(pruning if i == 0 else []), *stop_check]
        result = train(space, params, fold, seed, callbacks=callbacks, device=device)
        value = result.best_metrics.get(key, math.nan)
        values.append(value)
        bests.append(result.best_metrics)
        best_epochs.append(result.best_epoch)
        outcome.epochs = max(outcome.epochs, result.epochs_run)
        if run is not None:
            run.on_epoch_end(i, {f"cv_{key}": value})
    trial.set_user_attr(TRIAL_CV_VALUES, values)
    outcome.value = float(np.mean(values))
    outcome.best_epoch = round(float(np.mean(best_epochs)))
    shared = set.intersection(*(set(b) for b in bests))
    outcome.metrics = {k: float(np.mean([b[k] for b in bests])) for k in sorted(shared)}
    if len(values) > 1:
        outcome.metrics[f"cv_{key}_std"] = float(np.std(values))
