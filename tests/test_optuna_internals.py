"""Pins each Optuna behaviour that tuner relies on beyond Optuna's public API (all of them used
through tuner/search/_optuna.py): an Optuna upgrade that changes one fails here, loudly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from tuner.search._optuna import queued_params, set_state, trial_id, trial_of


@pytest.fixture
def storage(tmp_path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(tmp_path / "pin.journal")))


@pytest.fixture
def study(storage: JournalStorage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name="pin")


def test_a_trial_id_is_the_storage_id_of_the_trial(study: optuna.Study,
                                                   storage: JournalStorage) -> None:
    asked = study.ask()
    frozen = study.trials[0]
    assert trial_id(asked) == trial_id(frozen)
    assert storage.get_trial(trial_id(frozen)).number == asked.number


def test_claiming_a_queued_trial_is_atomic_and_gives_a_live_trial(
        study: optuna.Study, storage: JournalStorage) -> None:
    study.enqueue_trial({"x": 0.25})
    waiting = study.get_trials(states=(TrialState.WAITING,))[0]
    assert set_state(storage, trial_id(waiting), TrialState.RUNNING) is True
    # a second process trying the same trial is refused
    assert set_state(storage, trial_id(waiting), TrialState.RUNNING) is False
    live = trial_of(study, trial_id(waiting))
    assert live.suggest_float("x", 0.0, 1.0) == 0.25  # the queued value
    study.tell(live, 1.0)
    with pytest.raises(UpdateFinishedTrialError):
        set_state(storage, trial_id(waiting), TrialState.FAIL)


def test_a_trial_keeps_the_parameters_it_was_queued_with(study: optuna.Study) -> None:
    study.enqueue_trial({"x": 0.5, "k": "a"})
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, state=TrialState.FAIL)
    finished = study.trials[0]
    assert queued_params(finished) == {"x": 0.5, "k": "a"}  # even the never-suggested one
    sampled = study.ask()
    sampled.suggest_float("x", 0.0, 1.0)
    assert queued_params(study.trials[1]) == {}


_VIEWS_WITHOUT_MATPLOTLIB = """
import sys
import warnings

import optuna

from tuner.search import plotly_optuna_views

optuna.logging.set_verbosity(optuna.logging.WARNING)
views = plotly_optuna_views()
assert "matplotlib" not in sys.modules, "loading the plotly views imported matplotlib"
study = optuna.create_study()
study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=4)
views.plot_optimization_history(study)
assert "matplotlib" not in sys.modules, "a plotly view imported matplotlib"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    reached = optuna.visualization.matplotlib  # as an attribute, as a user's notebook would
    assert reached.is_available(), "matplotlib views unavailable after plotly_optuna_views"
    axes = reached.plot_optimization_history(study)
    import optuna.visualization.matplotlib as imported
assert imported is reached is optuna.visualization.matplotlib
print(type(axes).__name__)
"""


def test_plotly_views_load_without_matplotlib_and_matplotlib_views_still_load_whole() -> None:
    """Optuna's `visualization/__init__` imports its `matplotlib` subpackage, which imports
    pyplot inside a `try_import`; `plotly_optuna_views` hides matplotlib meanwhile, then lets the
    subpackage load whole on first use."""
    done = subprocess.run([sys.executable, "-c", _VIEWS_WITHOUT_MATPLOTLIB], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "MPLBACKEND": "Agg"},
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "Axes"


_IMPORTANCE_WITHOUT_SKLEARN = """
import sys
import warnings

import optuna

from tuner.search import optuna_importance, plotly_optuna_views

optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.simplefilter("ignore")
importance = optuna_importance()
plotly_optuna_views()
assert "sklearn" not in sys.modules, "loading optuna.importance imported scikit-learn"
study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
study.optimize(lambda t: t.suggest_float("x", 0, 1) + 1e-3 * t.suggest_float("y", 0, 1),
               n_trials=30)
found = importance.get_param_importances(study, evaluator=importance.PedAnovaImportanceEvaluator())
assert max(found, key=found.get) == "x", found
assert "sklearn" not in sys.modules, "PED-ANOVA imported scikit-learn"
# The forests' evaluators, reached as attributes or imported by name, load whole, once.
fanova = optuna.importance.FanovaImportanceEvaluator
from optuna.importance import FanovaImportanceEvaluator, MeanDecreaseImpurityImportanceEvaluator
from optuna.importance._fanova import FanovaImportanceEvaluator as from_module
assert fanova is FanovaImportanceEvaluator is from_module
for evaluator in (fanova(seed=0), MeanDecreaseImpurityImportanceEvaluator(seed=0)):
    found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    assert max(found, key=found.get) == "x", (evaluator, found)
assert "sklearn" in sys.modules
print(sorted(optuna.importance.__all__) == sorted(
    name for name in optuna.importance.__all__ if hasattr(optuna.importance, name)))
"""


def test_importances_load_without_scikit_learn_and_forest_evaluators_still_load_whole(
) -> None:
    """Optuna's `importance/__init__` imports its fANOVA and mean-decrease-impurity modules,
    which import scikit-learn inside a `try_import`; `optuna_importance` hides scikit-learn
    meanwhile, so PED-ANOVA runs without it, and those evaluators load whole on first use."""
    done = subprocess.run([sys.executable, "-c", _IMPORTANCE_WITHOUT_SKLEARN],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


@pytest.mark.parametrize("strategy", ["tpe", "gp"])
def test_tpe_and_gp_start_at_random_until_the_trials_tuner_counts_are_told(
        strategy: str) -> None:
    """`tuner.search._asking._STARTS` mirrors Optuna's start-up rule (which states count):
    TPE counts complete and pruned trials, GP complete ones only. Checked on the samplers
    themselves: before the start, the same draws as the random sampler of the same seed."""
    from tuner.search import make_sampler
    from tuner.search._asking import random_start

    start = random_start(make_sampler(strategy, 0))
    assert start is not None
    x = optuna.distributions.FloatDistribution(0.0, 1.0)
    for state in (TrialState.COMPLETE, TrialState.PRUNED):
        study = optuna.create_study(sampler=make_sampler(strategy, 0))
        for i in range(start.trials):
            study.add_trial(optuna.trial.create_trial(
                params={"x": 0.1 * i}, distributions={"x": x},
                value=0.1 * i if state == TrialState.COMPLETE else None,
                intermediate_values={1: 0.1 * i} if state == TrialState.PRUNED else None,
                state=state))
        drawn = study.ask({"x": x}).params["x"]
        reference = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for trial in study.trials[:-1]:
            reference.add_trial(trial)
        random = reference.ask({"x": x}).params["x"]
        assert (drawn != random) == (state in start.counted), state


def test_nsga2_records_the_generation_a_trial_was_asked_in() -> None:
    """`ga_generation` reads the attribute NSGA-II writes when a trial is asked: a trial asked
    while its generation has fewer than `population_size` complete trials joins it."""
    from tuner.search._optuna import ga_generation

    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=optuna.samplers.NSGAIISampler(population_size=4, seed=0))
    x = optuna.distributions.FloatDistribution(0.0, 1.0)
    running = [study.ask({"x": x}) for _ in range(5)]  # none complete: all five in generation 0
    for trial in running:
        study.tell(trial, [trial.params["x"], trial.params["x"] ** 2])
    for _ in range(4):
        trial = study.ask({"x": x})
        study.tell(trial, [trial.params["x"], trial.params["x"] ** 2])
    assert [ga_generation(t) for t in study.trials] == [0] * 5 + [1] * 4
    plain = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plain.tell(plain.ask({"x": x}), 0.5)
    assert ga_generation(plain.trials[0]) is None
