"""Parameter importances (`tuner.analysis.param_importances`): PED-ANOVA over the complete
trials, conditional parameters included, and nothing where nothing can be told."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from tuner.analysis import param_importances
from tuner.analysis._importances import best_trials


def _study(direction: str, trials: int, objective: object) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction=direction,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=trials)  # type: ignore[arg-type]
    return study


def _conditional(trial: optuna.Trial) -> float:
    """SGD is good only with high momentum; the learning rate barely matters."""
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    if trial.suggest_categorical("optimizer", ["adam", "sgd"]) == "sgd":
        return trial.suggest_float("momentum", 0.0, 0.99) + 1e-3 * lr
    return 0.5 + 1e-3 * lr


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_parameter_that_decides_the_best_trials_ranks_first(direction: str) -> None:
    sign = 1.0 if direction == "maximize" else -1.0
    study = _study(direction, 40, lambda t: sign * (t.suggest_float("x", 0, 1)
                                                    + 1e-3 * t.suggest_float("y", 0, 1)))
    found = param_importances(study)
    assert list(found) == ["x", "y"]
    assert found["x"] > 0.8
    assert sum(found.values()) == pytest.approx(1.0)


def test_conditional_parameters_get_an_importance_too() -> None:
    found = param_importances(_study("maximize", 60, _conditional))
    assert set(found) == {"lr", "optimizer", "momentum"}
    assert next(iter(found)) == "momentum"
    assert list(found) == sorted(found, key=lambda name: -found[name])


def test_a_parameter_of_one_possible_value_is_not_searched() -> None:
    def objective(trial: optuna.Trial) -> float:
        trial.suggest_categorical("activation", ["relu"])
        trial.suggest_int("layers", 2, 2)
        return trial.suggest_float("x", 0, 1) + 1e-3 * trial.suggest_float("y", 0, 1)

    assert set(param_importances(_study("maximize", 20, objective))) == {"x", "y"}
    fixed = _study("maximize", 5, lambda t: float(t.suggest_int("layers", 2, 2)))
    assert param_importances(fixed) == {}


def test_nothing_is_told_from_one_trial_or_from_equal_values() -> None:
    assert param_importances(_study("maximize", 1, lambda t: t.suggest_float("x", 0, 1))) == {}
    flat = _study("maximize", 12, lambda t: 0.0 * t.suggest_float("x", 0, 1))
    assert param_importances(flat) == {}
    pruned = _study("maximize", 0, lambda t: 0.0)
    for x in (0.1, 0.9):
        pruned.add_trial(optuna.trial.create_trial(
            params={"x": x}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
            state=TrialState.PRUNED, intermediate_values={1: x}))
    assert param_importances(pruned) == {}  # no complete trial


@pytest.mark.parametrize(("complete", "best"), [(2, 1), (9, 5), (10, 5), (16, 5), (40, 5),
                                                 (60, 6), (100, 10), (1000, 100)])
def test_the_best_trials_are_a_tenth_but_at_least_five_and_at_most_half(
        complete: int, best: int) -> None:
    assert best_trials(complete) == best


def test_the_views_page_names_the_method_and_contours_what_every_trial_has() -> None:
    """The contour plots two parameters over every complete trial: the most important ones
    that every trial has, not a conditional one (here SGD's momentum, the most important)."""
    from tuner.analysis import study_views

    study = _study("maximize", 40, _conditional)
    assert next(iter(param_importances(study))) == "momentum"
    page = str(study_views(study, png=False)["views.html"])
    assert ("Parameter importances (PED-ANOVA): what it took to be among the best 5 of 40 "
            "complete trials") in page
    contour = re.search(r"Contour of the two most important parameters that every trial has "
                        r"\(([^)]*)\)", page)
    assert contour is not None and set(contour.group(1).split(", ")) == {"lr", "optimizer"}


def test_the_page_draws_the_importances_as_optunas_plot_does() -> None:
    """The page's bar chart is drawn by tuner (Optuna's copies every trial once per parameter
    for its hover text); bars, labels and hover text are those of Optuna's plot."""
    from tuner.analysis._importances import KnownImportances
    from tuner.analysis._views import _importance_bars
    from tuner.search import plotly_optuna_views

    study = _study("maximize", 40, _conditional)
    found = param_importances(study)
    ours = _importance_bars(study.get_trials(deepcopy=False), found, "accuracy").to_dict()
    theirs = plotly_optuna_views().plot_param_importances(
        study, evaluator=KnownImportances(found), target_name="accuracy").to_dict()
    mine, optunas = ours["data"][0], theirs["data"][0]
    assert mine["y"] == optunas["y"] and mine["text"] == optunas["text"]
    assert mine["x"] == pytest.approx(optunas["x"])
    assert ([h.split(":")[0] for h in mine["hovertemplate"]]
            == [h.split(":")[0] for h in optunas["hovertemplate"]])
    for key in ("orientation", "name", "textposition", "cliponaxis"):
        assert mine[key] == optunas[key], key
    assert ours["layout"]["title"] == theirs["layout"]["title"]
    assert ours["layout"]["xaxis"]["title"] == theirs["layout"]["xaxis"]["title"]


def test_the_api_gives_a_stored_studys_importances(tmp_path: Path) -> None:
    import tuner

    space = tuner.parse_space(
        "name: api_importances\nmodel: custom\nobjective: {metric: score, direction: maximize}\n"
        "study: {strategy: random, trials: 20, seed: 0, pruner: none}\n"
        "params:\n  x: {type: float, low: 0.0, high: 1.0}\n"
        "  y: {type: float, low: 0.0, high: 1.0}\n")
    journal = str(tmp_path / "api.journal")

    def objective(params: dict[str, Any], reporter: Any) -> float:
        return float(params["x"]) + 1e-3 * float(params["y"])

    result = tuner.run_study(space, tuner.RunOptions(
        storage=journal, tracking=False, progress=False, views=False, threads=1),
        objective=objective)
    found = tuner.importances(result.study, journal)
    assert list(found) == ["x", "y"] and found["x"] > 0.8
    assert found == param_importances(tuner.open_study(result.study, journal))
    with pytest.raises(tuner.TunerError, match="no study 'missing'"):
        tuner.importances("missing", journal)
