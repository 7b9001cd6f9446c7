"""Finishing a study: its chosen trial (the best one; with several objectives, the first member of
the Pareto front) evaluated once on the held-out test split, and the parent run's record: the
summary metrics, space, parameters and trials, Optuna's views (or the Pareto front's), the model.
"""

from __future__ import annotations

import json
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from tuner.execution._models import data_metrics, log_models
from tuner.execution._session import Session
from tuner.search import TRIAL_PARAMS, TRIAL_SEED, pareto_front, pick
from tuner.training import criterion, evaluate, train

_CHOSEN = "best_trial_number"  # parent-run tag: the trial whose model the run holds


def chosen_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's answer: its best trial, or the first member of its Pareto front."""
    if len(study.directions) > 1:
        if not pareto_front(study):
            return None
        number = pick(study).number
        return next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    try:
        return study.best_trial
    except ValueError:
        return None


def finish_study(session: Session, log_model: bool, views: bool) -> dict[str, Any]:
    """Evaluate the chosen trial once on the test split; log the study's summary and model.
    Returns {"test_metrics": ..., "model_uri": ...} ({} without a complete trial)."""
    from tuner.analysis import front_views, study_views  # plotting loads when a study ends

    study, space, runs = session.study, session.space, session.runs
    chosen = chosen_trial(study)
    if chosen is None:
        return {}
    summary: dict[str, float] = {"best_trial": chosen.number}
    if not space.multi:
        summary["best_value"] = float(chosen.value or 0.0)
    if runs is not None and space.multi:
        front = [m.number for m in pareto_front(study)]
        runs.tracker.log_artifacts(runs.parent, {**front_views(study), "space.yaml": space.text},
                                   folder="pareto")
        runs.tracker.log_summary(runs.parent, {"front_size": len(front)},
                                 {"pareto_front": json.dumps(front)})
    if space.model != "mlp":  # a custom trainer's model is its own: nothing to retrain
        if runs is not None:
            runs.tracker.log_summary(runs.parent, summary, {_CHOSEN: str(chosen.number)})
        return {}
    if session.stats.ran == 0 and runs is not None:
        tags, logged = runs.tracker.run_data(runs.parent)
        if tags.get(_CHOSEN) == str(chosen.number):
            # Nothing new since the last evaluation: report it instead of repeating it.
            test = {k[5:]: v for k, v in logged.items() if k.startswith("test_")}
            return {"test_metrics": test, "model_uri": tags.get("model_uri")}
    model = _model_of(session, chosen)
    test = evaluate(model, session.data, session.data.test,
                    loss_fn=criterion(session.data, space.training.loss))
    final: dict[str, Any] = {"test_metrics": test, "model_uri": None}
    if runs is None:
        return final
    tracker, parent = runs.tracker, runs.parent
    tracker.log_summary(parent, {**summary, **{f"test_{k}": v for k, v in test.items()},
                                 **data_metrics(session.data)}, {_CHOSEN: str(chosen.number)})
    tracker.log_artifacts(parent, {
        "space.yaml": space.text,
        "best_params.json": json.dumps(chosen.user_attrs.get(TRIAL_PARAMS, chosen.params),
                                       indent=2, default=str),
        "trials.csv": study.trials_dataframe().to_csv(index=False),
    })
    if views and not space.multi:
        # The interactive page only: the PNGs take seconds of matplotlib (`tuner report`).
        tracker.log_artifacts(parent, study_views(study, png=False), folder="views")
    if log_model:
        # The PyTorch model; for tables also a scorer of raw rows (pipeline + model).
        final["model_uri"], scorer = log_models(tracker, parent, model, session.data)
        tracker.log_summary(parent, {}, {"model_uri": final["model_uri"],
                                         **({"scorer_uri": scorer} if scorer else {})})
    return final


def _model_of(session: Session, chosen: FrozenTrial) -> torch.nn.Module:
    """The chosen trial's model: kept if this process trained it, else trained again with the
    same parameters and seed (a cross-validated trial kept none: it trains on the train split)."""
    kept = session.best
    if kept is not None and kept.number == chosen.number and kept.fit is not None:
        return kept.fit.model
    params = chosen.user_attrs.get(TRIAL_PARAMS, chosen.params)
    return train(session.space, params, session.data,
                 int(chosen.user_attrs.get(TRIAL_SEED, 0))).model
