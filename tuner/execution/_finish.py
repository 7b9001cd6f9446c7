"""Finishing a study, in one place: its final configuration chosen on validation (the best trial,
or the best of the top trials re-evaluated on fresh folds, or an ensemble of them; with several
objectives, the first member of the Pareto front), its final model (refit on train + validation
by default), that model evaluated once on the held-out test split, and the parent run's record:
the summary metrics, how the choice was made, space, parameters and trials, Optuna's views (or
the Pareto front's), the model.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from tuner.execution._final import recipe_of
from tuner.execution._models import data_metrics, log_models
from tuner.execution._reevaluate import Choice, choose, top_trials
from tuner.execution._refit import FinalModel, custom_refit, final_model
from tuner.execution._runs import StudyRuns
from tuner.execution._session import Session
from tuner.search import ATTR_FINAL, TRIAL_PARAMS, pareto_front, pick
from tuner.space import ReevaluationPlan, Space
from tuner.training import criterion, evaluate

_CHOSEN = "best_trial_number"  # parent-run tag: the trial whose model the run holds
_SIGNATURE = "final_signature"  # parent-run tag: what the logged final model was made from


def chosen_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's answer before any re-evaluation: its best trial, or the first member of its
    Pareto front."""
    if len(study.directions) > 1:
        if not pareto_front(study):
            return None
        number = pick(study).number
        return next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    try:
        return study.best_trial
    except ValueError:
        return None


def finish_study(session: Session, log_model: bool, views: bool,
                 refit: bool = True) -> dict[str, Any]:
    """Choose the final model, evaluate it once on the test split, log the study's summary and
    model. Returns {"test_metrics", "model_uri", "test_model", "final"} ({} without a complete
    trial; a custom trainer without a refit hook has no test metrics)."""
    chosen = chosen_trial(session.study)
    if chosen is None:
        return {}
    result = _finish(session, chosen, log_model, views, refit)
    if session.runs is not None and not session.space.multi:
        # Last: the trial runs are written by now (asked earlier, the study would wait for
        # them, and for the writer's warm-up, before its re-evaluation).
        session.runs.note_best_run(session.study, chosen.number)
    return result


def _finish(session: Session, chosen: FrozenTrial, log_model: bool, views: bool,
            refit: bool) -> dict[str, Any]:
    study, space, runs = session.study, session.space, session.runs
    summary: dict[str, float] = {"best_trial": chosen.number}
    if not space.multi:
        summary["best_value"] = float(chosen.value or 0.0)
    if runs is not None and space.multi:
        _log_front(runs, study, space)
    if space.model != "mlp":
        return _finish_custom(session, chosen, summary, refit)
    refit = refit and not space.multi  # a Pareto-front member keeps its own model
    plan = reevaluation_plan(session)
    signature = _signature(study, chosen, plan, refit)
    reused = _reuse(session, signature)
    if reused is not None:
        return reused
    choice = choose(space, study, chosen, plan) if not space.multi else _front_choice(
        space, chosen)
    final = final_model(session, choice.members, refit)
    # The one test evaluation of this final model.
    test = evaluate(final.model, final.data, final.data.test,
                    loss_fn=criterion(final.data, space.training.loss))
    record = {**choice.as_dict(), "refit": refit, "final_model_s": round(final.seconds, 3)}
    study.set_user_attr(ATTR_FINAL, record)
    result: dict[str, Any] = {"test_metrics": test, "model_uri": None,
                              "test_model": final.description, "final": record}
    if runs is None:
        return result
    # Where the writer process logs the model (after the trial runs it still has to write),
    # this process renders the views page meanwhile (a tenth of a second for the default
    # study, about a second for a thousand trials) instead of waiting for it.
    background = log_model and runs.tracker.logs_models_elsewhere
    with ThreadPoolExecutor(1, thread_name_prefix="tuner-model") as pool:
        logging = pool.submit(log_models, runs.tracker, runs.parent, final.model,
                              final.data) if background else None
        pages = _views_page(study) if views and not space.multi else {}
        _log_summary(session, runs, summary, choice, final, test, signature)
        _log_artifacts(runs, study, space, chosen, record)
        runs.tracker.log_artifacts(runs.parent, pages, folder="views")
        if log_model:
            model_uri, scorer = logging.result() if logging is not None else log_models(
                runs.tracker, runs.parent, final.model, final.data)
            runs.tracker.log_summary(runs.parent, {}, {
                "model_uri": model_uri, **({"scorer_uri": scorer} if scorer else {})})
            result["model_uri"] = model_uri
    return result


def reevaluation_plan(session: Session) -> ReevaluationPlan:
    """The space's `study.final`, resolved for the study's validation split."""
    data, spec = session.data, session.space.data
    share = spec.val_fraction / (1.0 - (0.0 if spec.own_test else spec.test_fraction))
    plan = session.space.study.final.plan(len(data.val) or len(data.train), share)
    return plan if not session.space.multi else ReevaluationPlan(0, plan.folds, 1, 0)


def _front_choice(space: Space, chosen: FrozenTrial) -> Choice:
    return Choice("single", (recipe_of(chosen, space),), float("nan"),
                  f"trial {chosen.number}: the first member of the Pareto front",
                  chosen.number, float("nan"))


def _signature(study: optuna.Study, chosen: FrozenTrial, plan: ReevaluationPlan,
               refit: bool) -> str:
    """What the final model is made from: the trials that could be chosen and how."""
    numbers = [t.number for t in top_trials(study, plan.top_k, study.direction.name.lower())] \
        if plan.on else [chosen.number]
    return json.dumps({"trials": numbers, "plan": plan.describe(), "refit": refit})


def _reuse(session: Session, signature: str) -> dict[str, Any] | None:
    """Nothing new since the last finish of this study, logged with the same signature: report
    that evaluation instead of repeating it (the test split is used once per final model)."""
    runs = session.runs
    if session.stats.ran != 0 or runs is None:
        return None
    tags, logged = runs.tracker.run_data(runs.parent)
    if tags.get(_SIGNATURE) != signature:
        return None
    test = {k[5:]: v for k, v in logged.items() if k.startswith("test_")}
    return {"test_metrics": test, "model_uri": tags.get("model_uri"),
            "test_model": tags.get("test_model"),
            "final": session.study.user_attrs.get(ATTR_FINAL, {})}


def _finish_custom(session: Session, chosen: FrozenTrial, summary: dict[str, float],
                   refit: bool) -> dict[str, Any]:
    """A custom trainer's model is its own: its refit hook (if any) refits and tests it."""
    runs, space = session.runs, session.space
    refitted = custom_refit(space, chosen) if refit and not space.multi else None
    tags = {_CHOSEN: str(chosen.number)}
    if refitted is None:
        if runs is not None:
            runs.tracker.log_summary(runs.parent, summary, tags)
        return {}
    test, description = refitted
    if runs is not None:
        runs.tracker.log_summary(runs.parent, {**summary, **{f"test_{k}": v for k, v in
                                                            test.items()}},
                                 {**tags, "test_model": description})
    return {"test_metrics": test, "model_uri": None, "test_model": description}


def _log_front(runs: StudyRuns, study: optuna.Study, space: Space) -> None:
    from tuner.analysis import front_views  # plotting loads when a study ends

    front = [m.number for m in pareto_front(study)]
    runs.tracker.log_artifacts(runs.parent, {**front_views(study), "space.yaml": space.text},
                               folder="pareto")
    runs.tracker.log_summary(runs.parent, {"front_size": len(front)},
                             {"pareto_front": json.dumps(front)})


def _log_summary(session: Session, runs: StudyRuns, summary: dict[str, float], choice: Choice,
                 final: FinalModel, test: dict[str, float], signature: str) -> None:
    """Test metrics, and how the final model was chosen: its trials, the validation score it
    stands on, the raw best's re-evaluated score and optimism (the MLflow UI shows them)."""
    metrics = {**summary, **{f"test_{k}": v for k, v in test.items()},
               **data_metrics(session.data), "chosen_trial": choice.members[0].number,
               "final_model_s": final.seconds}
    optional = {"chosen_value": choice.value, "raw_best_reevaluated": choice.raw_reevaluated,
                "optimism": choice.optimism, "ensemble_value": choice.ensemble_value,
                "reevaluate_s": choice.seconds if choice.plan != "off" else None}
    metrics.update({k: v for k, v in optional.items() if v is not None and v == v})
    tags = {_CHOSEN: str(choice.members[0].number), _SIGNATURE: signature,
            "final_kind": choice.kind, "final_trials": ",".join(str(m.number) for m in
                                                                choice.members),
            "final_reason": choice.reason, "test_model": final.description,
            "refit": str(final.refit).lower(), "reevaluation": choice.plan}
    runs.tracker.log_summary(runs.parent, metrics, tags)


def _log_artifacts(runs: StudyRuns, study: optuna.Study, space: Space, chosen: FrozenTrial,
                   record: dict[str, Any]) -> None:
    runs.tracker.log_artifacts(runs.parent, {
        "space.yaml": space.text,
        "best_params.json": json.dumps(chosen.user_attrs.get(TRIAL_PARAMS, chosen.params),
                                       indent=2, default=str),
        "final_choice.json": json.dumps(record, indent=2, default=str),
        "trials.csv": study.trials_dataframe().to_csv(index=False),
    })


def load_views() -> None:
    """Import what the views page needs (plotly, Optuna's views and importances: 0.06 s here
    since scikit-learn stays out), where this process would otherwise wait: while `tuner run`'s
    writer process checks the store, which takes as long as MLflow's imports there."""
    from tuner.analysis import study_views  # noqa: F401
    from tuner.search import plotly_optuna_views

    plotly_optuna_views()


def _views_page(study: optuna.Study) -> dict[str, str | bytes]:
    """The interactive views page only: the PNGs take seconds of matplotlib (`tuner report`)."""
    from tuner.analysis import study_views  # plotting loads when a study ends

    return study_views(study, png=False)
