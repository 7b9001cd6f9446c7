"""The final model: one configuration retrained on train + validation, evaluated once on the
test split, logged to MLflow with its preprocessing; and configurations exported to YAML.

`tuner evaluate STUDY` takes the trial the study chose (its best, unless re-evaluation chose
another); `tuner train FILE` takes a space file whose
parameters are all fixed (what `tuner export STUDY` writes). Both train the same way, so a
configuration exported from a study and trained again reproduces `evaluate`'s figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from optuna.trial import FrozenTrial

from tuner import analysis  # its plots load matplotlib on first use, after training
from tuner.data import Dataset, confusion_matrix, final_dataset
from tuner.errors import TunerError
from tuner.execution._models import data_metrics, log_models
from tuner.execution._options import FinalOptions, FinalResult
from tuner.search import (
    ATTR_PARENT_RUN,
    TRIAL_PARAMS,
    TRIAL_SEED,
    best_epoch,
    final_trial,
    find_study,
    front_trial,
    stored_space,
)
from tuner.space import EarlyStopping, FixedParam, Space
from tuner.tracking import Tracker, register_model, run_experiment, writer_prestarted
from tuner.training import FitResult, criterion, evaluate, predict, train

ROLE = "final"  # the `tuner.role` tag of a final model's MLflow run


@dataclass(frozen=True)
class Recipe:
    """What turns a trial into a final model: its parameters, its torch seed, and as many epochs
    as gave the weights it kept."""

    number: int
    params: dict[str, Any]
    seed: int
    epochs: int


def recipe_of(trial: FrozenTrial, space: Space) -> Recipe:
    return Recipe(trial.number, dict(trial.user_attrs.get(TRIAL_PARAMS, trial.params)),
                  int(trial.user_attrs.get(TRIAL_SEED, 0)), best_epoch(trial, space))


def retrain(space: Space, params: dict[str, Any], seed: int, epochs: int, data: Dataset,
            early_stopping: bool = False) -> FitResult:
    """Train a configuration on `data` (`final_dataset`: train + validation) for `epochs`
    epochs; with `early_stopping`, at most that many, stopping on the held-out slice. The one
    retraining of a final model: `tuner evaluate`, `tuner train` and the study's refit."""
    early = None
    if early_stopping:
        early = space.training.early_stopping or EarlyStopping(
            space.objective.metric, space.objective.direction)
    return train(space, params, data, seed, max_epochs=epochs, early_stopping=early)


def evaluate_study(study_name: str, storage: str | None, options: FinalOptions) -> FinalResult:
    """Retrain the study's final configuration (the trial it chose; with several objectives, a
    Pareto-front member) on train + validation and test it once."""
    study = find_study(storage, study_name)
    space = stored_space(study)
    best = front_trial(study, options.front_index, options.where) if len(study.directions) > 1 \
        else final_trial(study)
    recipe = recipe_of(best, space)
    seed = recipe.seed if options.seed is None else options.seed
    epochs = options.epochs or (space.training.max_epochs if options.early_stopping
                                else recipe.epochs)
    parent = study.user_attrs.get(ATTR_PARENT_RUN)
    return _train(space, recipe.params, seed, epochs, options, f"{study_name}-final",
                  f"study {study_name}, trial {best.number}",
                  {"study": study_name, "trial_number": str(best.number)}, parent)


def train_space(space: Space, options: FinalOptions) -> FinalResult:
    """Train the one configuration of a space whose parameters are all fixed."""
    params: dict[str, Any] = {}
    for param in space.params:
        if param.when is not None and not param.when.holds(params):
            continue
        if not isinstance(param, FixedParam):
            raise TunerError(f"{space.file}: params.{param.name} is searched ({param.describe()}); "
                             "`tuner train` needs one fixed configuration (see `tuner export`)")
        params[param.name] = param.value
    seed = space.study.seed if options.seed is None else options.seed
    early = options.early_stopping or space.training.early_stopping is not None
    epochs = options.epochs or space.training.max_epochs
    return _train(space, params, seed, epochs, replace(options, early_stopping=early),
                  f"{space.name}-train", space.file, {"config": space.file}, None)


def _train(space: Space, params: dict[str, Any], seed: int, epochs: int, options: FinalOptions,
           name: str, origin: str, tags: dict[str, str], parent: str | None) -> FinalResult:
    started = time.perf_counter()
    torch.set_num_threads(options.threads or 1)
    data = final_dataset(space.data, holdout=options.early_stopping)  # bad data fail here
    result = retrain(space, params, seed, epochs, data, options.early_stopping)
    early = options.early_stopping
    model = result.model
    test = evaluate(model, data, data.test, loss_fn=criterion(data, space.training.loss))
    out = predict(model, data.test.x).numpy()
    confusion, residuals, figure = None, None, ("", b"")
    if data.task == "classification":
        matrix = confusion_matrix(data.test.y.numpy(), out.argmax(axis=1), len(data.classes))
        confusion = matrix.tolist()
        if options.tracking:
            figure = ("confusion_matrix.png",
                      analysis.confusion_png(matrix, data.classes, f"{name}: test confusion matrix"))
    else:
        y = data.to_original_units(data.test.y.numpy().astype(np.float64))
        pred = data.to_original_units(out[:, 0].astype(np.float64))
        error = y - pred
        residuals = {"mean": float(error.mean()), "std": float(error.std()),
                     "max_abs": float(np.abs(error).max())}
        if options.tracking:
            figure = ("residuals.png", analysis.residual_png(y, pred, f"{name}: test residuals"))
    final = FinalResult(
        name=name, origin=origin, task=data.task, params=params,
        epochs=result.epochs_run if early else epochs, seed=seed,
        rows={"train": len(data.train), "early_stopping": len(data.val), "test": len(data.test)},
        test_metrics=test, classes=list(data.classes), confusion=confusion, residuals=residuals)
    if options.tracking:
        final = _log(space, data, model, final, options, tags, parent, figure, result.best_epoch)
    return replace(final, wall_s=round(time.perf_counter() - started, 3))


def _log(space: Space, data: Dataset, model: torch.nn.Module, final: FinalResult,
         options: FinalOptions, tags: dict[str, str], parent: str | None,
         figure: tuple[str, bytes], best_epoch: int) -> FinalResult:
    experiment = options.experiment
    if parent is not None:
        holder = run_experiment(options.tracking_uri, parent)
        parent = parent if holder is not None and experiment in (None, holder) else None
        experiment = experiment or holder
    # A writer process started beside the command's imports (`tuner.evaluate`, `tuner.train`)
    # has made MLflow's and model logging's imports meanwhile: the run is written there.
    elsewhere = writer_prestarted()
    with Tracker(options.tracking_uri, experiment or space.name, asynchronous=elsewhere,
                 process=elsewhere, warm_up=options.log_model) as tracker:
        return _log_run(tracker, space, data, model, final, options, tags, parent, figure,
                        best_epoch)


def _log_run(tracker: Tracker, space: Space, data: Dataset, model: torch.nn.Module,
             final: FinalResult, options: FinalOptions, tags: dict[str, str], parent: str | None,
             figure: tuple[str, bytes], best_epoch: int) -> FinalResult:
    run_id = tracker.start_run(final.name, {**tags, "tuner.role": ROLE, "seed": str(final.seed),
                                            "epochs": str(final.epochs),
                                            "best_epoch": str(best_epoch),
                                            "early_stopping": str(options.early_stopping).lower(),
                                            "data": space.data.source},
                               final.params, parent_run_id=parent)
    status = "FAILED"
    try:
        tracker.log_summary(run_id, {**{f"test_{k}": v for k, v in final.test_metrics.items()},
                                     **data_metrics(data)})
        files: dict[str, str | bytes] = {figure[0]: figure[1], "space.yaml": space.text}
        if final.confusion is not None:
            header = ",".join(["true\\predicted", *final.classes])
            lines = [header] + [",".join([c, *map(str, row)])
                                for c, row in zip(final.classes, final.confusion, strict=True)]
            files["confusion_matrix.csv"] = "\n".join(lines) + "\n"
        tracker.log_artifacts(run_id, files)
        model_uri = scorer_uri = registered = None
        if options.log_model:
            model_uri, scorer_uri = log_models(tracker, run_id, model, data)
            tracker.log_summary(run_id, {}, {"model_uri": model_uri,
                                             **({"scorer_uri": scorer_uri} if scorer_uri else {})})
            if options.register:
                version = register_model(tracker, scorer_uri or model_uri, options.register)
                registered = f"{options.register} version {version}"
        status = "FINISHED"
    finally:
        tracker.end_run(run_id, status)
    return replace(final, mlflow_run_id=run_id, model_uri=model_uri, scorer_uri=scorer_uri,
                   registered=registered, tracking_uri=tracker.experiment_url())
