"""The study's final model, from the chosen configuration(s): refit on train + validation as
`tuner evaluate` does (the default), or the chosen trial's own model (`--no-refit`); several
members make one `Ensemble`. A custom trainer refits through its own hook, if it has one."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from optuna.trial import FrozenTrial
from torch import nn

from tuner.data import Dataset, final_dataset
from tuner.execution._final import Recipe, recipe_of, retrain
from tuner.execution._session import Session
from tuner.space import Space
from tuner.training import Ensemble, refit_hook, resolve, train

REFIT = "refit on train + validation"
OWN = "trained on the train split"


@dataclass(frozen=True)
class FinalModel:
    model: nn.Module  # one MLP, or an Ensemble of them
    data: Dataset  # the rows it learnt from (their preprocessing is logged with it); its test split
    refit: bool
    description: str  # which model the test metrics belong to
    seconds: float


def final_model(session: Session, members: tuple[Recipe, ...], refit: bool) -> FinalModel:
    """Train (or take) the final model of `members`: refit on train + validation for each
    member's kept epochs with its seed, or each member trial's own model."""
    started = time.perf_counter()
    space = session.space
    if refit:
        data = final_dataset(space.data, holdout=False)
        models: list[nn.Module] = [retrain(space, m.params, m.seed, m.epochs, data).model
                                   for m in members]
    else:
        data = session.data
        models = [_trial_model(session, m) for m in members]
    model = models[0] if len(models) == 1 else Ensemble(models, data.task)
    return FinalModel(model, data, refit, describe(members, refit, len(data.train)),
                      time.perf_counter() - started)


def describe(members: tuple[Recipe, ...], refit: bool, rows: int) -> str:
    how = REFIT if refit else OWN
    if len(members) == 1:
        epochs = f", {members[0].epochs} epochs" if refit else ""
        return f"trial {members[0].number}, {how} ({rows} rows{epochs})"
    numbers = ", ".join(str(m.number) for m in members)
    return f"ensemble of trials {numbers} (mean of their outputs), each {how} ({rows} rows)"


def _trial_model(session: Session, member: Recipe) -> nn.Module:
    """A trial's own model: kept if this process trained it, else trained again with the same
    parameters and seed (a cross-validated trial kept none: it trains on the train split)."""
    kept = session.best
    if kept is not None and kept.number == member.number and kept.fit is not None:
        return kept.fit.model
    return train(session.space, member.params, session.data, member.seed).model


def custom_refit(space: Space, chosen: FrozenTrial) -> tuple[dict[str, float], str] | None:
    """A custom trainer's refit hook, called with the chosen trial's recipe: (its test metrics,
    which model they belong to), or None without a hook."""
    hook = refit_hook(resolve(space.hash, space.trainer, Path(space.file).parent))
    if hook is None:
        return None
    recipe = recipe_of(chosen, space)
    metrics = hook(dict(recipe.params), recipe.seed, recipe.epochs)
    return ({k: float(v) for k, v in metrics.items()},
            f"trial {chosen.number}, refit by the trainer's hook ({recipe.epochs} epochs)")
