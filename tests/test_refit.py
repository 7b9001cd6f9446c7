"""The study's final model: refit on train + validation by default, chosen on validation (raw
best, re-evaluated on fresh folds, or an ensemble), evaluated once on the test split."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.pytorch
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

import tuner
from tests.conftest import custom_space, subprocess_env, tuner_command, write_space
from tests.helpers import load_study, runs_of
from tuner import RunOptions, load_space, parse_space, run_study
from tuner.data import final_dataset, load_dataset, reshuffled_folds
from tuner.execution import FinalOptions, evaluate_study
from tuner.search import ATTR_FINAL, TRIAL_PARAMS, TRIAL_SEED, best_epoch
from tuner.training import Ensemble, evaluate, train

pytestmark = pytest.mark.usefixtures("one_thread")

DIGITS = """\
name: refit_digits
data: {source: digits}
training:
  max_epochs: 4
  early_stopping: {patience: 2}
study:
  strategy: random
  pruner: none
  final: %s
params:
  units: {type: int, low: 16, high: 48}
  lr: {type: float, low: 3e-3, high: 3e-2, log: true}
  batch_size: 128
"""


@pytest.fixture(autouse=True)
def store(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading `models:/...` URIs asks the default tracking store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)


def options(tmp: Path, **kw: Any) -> RunOptions:
    base: dict[str, Any] = dict(storage=str(tmp / "study.journal"), tracking=False,
                                log_model=False, progress=False, threads=1, views=False, trials=3)
    base.update(kw)
    return RunOptions(**base)


def digits(workdir: Path, final: str = "{top_k: 0}") -> tuner.Space:
    return load_space(write_space(workdir, DIGITS % final, "digits.yaml"))


def trial_model(space: tuner.Space, study: Any, number: int) -> torch.nn.Module:
    """A trial's own model, trained again from its recorded parameters and seed."""
    trial = next(t for t in study.trials if t.number == number)
    return train(space, trial.user_attrs[TRIAL_PARAMS], load_dataset(space.data),
                 trial.user_attrs[TRIAL_SEED]).model


def test_a_study_refits_its_choice_on_train_and_validation_by_default(
        workdir: Path, tracking_uri: str) -> None:
    space = digits(workdir)
    result = run_study(space, options(workdir, tracking=True, tracking_uri=tracking_uri,
                                      experiment="refit-default", log_model=True))
    study = load_study(result.study, workdir / "study.journal")
    best = study.best_trial
    epochs = best_epoch(best, space)
    assert result.test_model == f"trial {best.number}, refit on train + validation (1437 rows, " \
        f"{epochs} epochs)"
    assert result.final["kind"] == "single" and result.final["refit"] is True
    # The same model `tuner evaluate` trains (shared code): the same test figures.
    evaluated = evaluate_study(result.study, str(workdir / "study.journal"),
                               FinalOptions(tracking=False, threads=1))
    assert evaluated.epochs == epochs and evaluated.test_metrics == result.test_metrics
    # The logged model is that one: it scores raw test rows as the summary says.
    parent = runs_of(tracking_uri, "refit-default")[0][0]
    tags, metrics = parent.data.tags, parent.data.metrics
    assert tags["test_model"] == result.test_model and tags["refit"] == "true"
    assert tags["final_kind"] == "single" and tags["final_trials"] == str(best.number)
    assert metrics["test_accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    model = mlflow.pytorch.load_model(result.model_uri)
    rows = final_dataset(space.data, holdout=False).test_rows
    from sklearn import datasets

    bunch = datasets.load_digits()
    with torch.inference_mode():
        probs = model(torch.as_tensor(bunch.data[rows], dtype=torch.float32)).numpy()
    assert np.mean(probs.argmax(axis=1) == bunch.target[rows]) == \
        pytest.approx(result.test_metrics["accuracy"])
    files = {a.path for a in MlflowClient(tracking_uri).list_artifacts(parent.info.run_id)}
    assert "final_choice.json" in files


def test_no_refit_keeps_the_chosen_trials_own_model(workdir: Path) -> None:
    space = digits(workdir)
    result = run_study(space, options(workdir, refit=False))
    study = load_study(result.study, workdir / "study.journal")
    number = study.best_trial.number
    assert result.test_model == f"trial {number}, trained on the train split (1077 rows)"
    data = load_dataset(space.data)
    own = evaluate(trial_model(space, study, number), data, data.test)
    assert own["accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert result.final["refit"] is False


def test_reevaluation_scores_the_top_trials_on_fresh_folds_and_records_the_optimism(
        workdir: Path, tracking_uri: str) -> None:
    space = digits(workdir, "{top_k: 2, folds: 3}")
    journal = workdir / "study.journal"
    result = run_study(space, options(workdir, trials=4, tracking=True,
                                      tracking_uri=tracking_uri, experiment="refit-reeval"))
    study = load_study(result.study, journal)
    ranked = sorted(study.trials, key=lambda t: (-t.value, t.number))
    final = result.final
    assert final["plan"] == "top 2 trials on 3 folds"
    assert set(final["reevaluated"]) == {str(t.number) for t in ranked[:2]}
    scores = {int(k): v for k, v in final["reevaluated"].items()}
    chosen = max(scores, key=lambda n: (scores[n], -n))
    assert final["trials"] == [chosen] and final["kind"] == "re-evaluated"
    assert final["value"] == pytest.approx(scores[chosen])
    raw = ranked[0]
    assert final["raw_best_trial"] == raw.number and final["raw_best_value"] == raw.value
    assert final["raw_best_reevaluated"] == pytest.approx(scores[raw.number])
    assert final["optimism"] == pytest.approx(raw.value - scores[raw.number])
    assert f"trial {chosen}" in result.test_model and "refit" in result.test_model
    # The study and the parent run record it, for `tuner best` and the MLflow UI.
    assert load_study(result.study, journal).user_attrs[ATTR_FINAL]["optimism"] == \
        pytest.approx(final["optimism"])
    parent = runs_of(tracking_uri, "refit-reeval")[0][0]
    assert parent.data.metrics["optimism"] == pytest.approx(final["optimism"])
    assert parent.data.metrics["chosen_value"] == pytest.approx(final["value"])
    assert parent.data.metrics["chosen_trial"] == chosen
    assert parent.data.tags["final_kind"] == "re-evaluated"
    assert f"raw best trial {raw.number}" in parent.data.tags["final_reason"]
    # The folds cover train + validation once each, never a test row.
    folds = reshuffled_folds(space.data, 3, 0)
    data = load_dataset(space.data)
    assert sum(len(f.val) for f in folds) == len(data.train) + len(data.val) == 1437
    assert all(len(f.train) + len(f.val) == 1437 and len(f.test) == 0 for f in folds)


def test_the_folds_of_a_reevaluation_score_what_each_fold_trained_alone_scores(
        workdir: Path) -> None:
    """Each configuration's folds train as one pack (4 folds of 1,437 rows: 1,077 or 1,078
    rows each); every fold's model is the one the textbook loop trains on that fold alone."""
    from tests.reference_loop import reference_fit
    from tuner.execution._final import recipe_of
    from tuner.execution._reevaluate import _seed
    from tuner.space import TrialConfig
    from tuner.training import predict

    space = digits(workdir, "{top_k: 2, folds: 4}")
    result = run_study(space, options(workdir, trials=3))
    study = load_study(result.study, workdir / "study.journal")
    folds = reshuffled_folds(space.data, 4, 0)
    assert len({len(f.train) for f in folds}) == 2
    for number, value in result.final["reevaluated"].items():
        recipe = recipe_of(study.trials[int(number)], space)
        scores = []
        for i, fold in enumerate(folds):
            blind = replace(fold, val=replace(fold.val, x=fold.val.x[:0], y=fold.val.y[:0]))
            model = reference_fit(TrialConfig.from_params(recipe.params), blind,
                                  max_epochs=recipe.epochs, early_stopping=None,
                                  seed=_seed(recipe.seed, 0, i)).model
            out = predict(model, fold.val.x)
            scores.append(float((out.argmax(1) == fold.val.y).float().mean()))
        assert value == pytest.approx(float(np.mean(scores)), abs=1e-6)  # < a row: 7e-4


def test_folds_that_would_not_fit_in_memory_together_train_one_at_a_time(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.execution import _reevaluate

    space = digits(workdir, "{top_k: 2, folds: 3}")
    packed = run_study(space, options(workdir, trials=3)).final["reevaluated"]
    sizes: list[int] = []
    fit_packed = _reevaluate.fit_packed

    def recording(trials: Any, data: Any, **kw: Any) -> Any:
        sizes.append(len(trials))
        return fit_packed(trials, data, **kw)

    monkeypatch.setattr(_reevaluate, "fit_packed", recording)
    study = load_study(f"{space.name}-random-seed0", workdir / "study.journal")
    best = max(study.trials, key=lambda t: (t.value, -t.number))
    plan = tuner.space.ReevaluationPlan(2, 3, 1, 0)
    _reevaluate.choose(space, study, best, plan)
    assert sizes and set(sizes) == {3}  # each configuration's 3 folds as one pack
    sizes.clear()
    monkeypatch.setattr(_reevaluate, "training_budget", lambda device: 1)  # nothing fits
    alone = _reevaluate.choose(space, study, best, plan).reevaluated
    assert sizes == [1] * 6
    assert {str(k): v for k, v in alone.items()} == pytest.approx(packed, abs=1e-6)


def test_how_the_final_model_is_chosen_may_change_on_a_finished_study(
        workdir: Path, tracking_uri: str) -> None:
    opts = options(workdir, tracking=True, tracking_uri=tracking_uri, experiment="refit-again")
    first = run_study(digits(workdir), opts)
    again = run_study(digits(workdir), opts)  # nothing new: the logged evaluation is reported
    assert again.test_metrics == first.test_metrics and again.test_model == first.test_model
    changed = run_study(digits(workdir, "{top_k: 2, folds: 2}"), opts)  # not a space change
    assert changed.n_complete == 3 and changed.final["plan"] == "top 2 trials on 2 folds"
    parent = runs_of(tracking_uri, "refit-again")[0][0]
    assert parent.data.tags["reevaluation"] == "top 2 trials on 2 folds"
    assert parent.data.metrics["test_accuracy"] == \
        pytest.approx(changed.test_metrics["accuracy"])


def test_an_ensemble_averages_its_members_and_is_logged_as_one_model(
        workdir: Path, tracking_uri: str) -> None:
    # Log loss rewards averaging: the ensemble of three wins on the re-evaluation folds.
    text = (DIGITS % "{top_k: 3, folds: 2, ensemble: 3}").replace(
        "name: refit_digits", "name: refit_digits\nobjective: {metric: log_loss}")
    space = parse_space(text, file=str(workdir / "ens.yaml"))
    result = run_study(space, options(workdir, trials=4, tracking=True, log_model=True,
                                      tracking_uri=tracking_uri, experiment="refit-ensemble"))
    final = result.final
    assert final["kind"] == "ensemble" and len(final["trials"]) == 3
    assert final["ensemble_value"] == final["value"] < min(final["reevaluated"].values())
    assert result.test_model.startswith(f"ensemble of trials {', '.join(map(str, final['trials']))}")
    # The logged model is the mean of the members' probabilities, each member refit on
    # train + validation from its trial's parameters, seed and kept epochs.
    study = load_study(result.study, workdir / "study.journal")
    data = final_dataset(space.data, holdout=False)
    members = []
    for number in final["trials"]:
        trial = next(t for t in study.trials if t.number == number)
        members.append(train(space, trial.user_attrs[TRIAL_PARAMS], data,
                             trial.user_attrs[TRIAL_SEED], max_epochs=best_epoch(trial, space),
                             early_stopping=None).model)
    ensemble = Ensemble(members, "classification")
    assert evaluate(ensemble, data, data.test) == pytest.approx(result.test_metrics)
    scaler = data.feature_scaler
    raw = data.test.x.numpy() * scaler.scale + scaler.mean
    model = mlflow.pytorch.load_model(result.model_uri)
    with torch.inference_mode():
        probs = model(torch.as_tensor(raw, dtype=torch.float32)).numpy()
        mean = torch.stack([torch.softmax(m(data.test.x), dim=1) for m in members]).mean(0)
    assert np.allclose(probs, mean.numpy(), atol=1e-5)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    parent = runs_of(tracking_uri, "refit-ensemble")[0][0]
    assert parent.data.tags["final_kind"] == "ensemble"
    assert parent.data.metrics["ensemble_value"] == pytest.approx(final["value"])


def test_the_ensemble_module_averages_probabilities_or_predictions() -> None:
    a, b = torch.nn.Linear(2, 3), torch.nn.Linear(2, 3)
    x = torch.randn(5, 2)
    with torch.no_grad():
        out = Ensemble([a, b], "classification")(x)
        mean = (torch.softmax(a(x), 1) + torch.softmax(b(x), 1)) / 2
        assert torch.allclose(torch.softmax(out, 1), mean, atol=1e-6)
        c, d = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
        assert torch.allclose(Ensemble([c, d], "regression")(x), (c(x) + d(x)) / 2)


TABLE = """\
name: refit_table
data: {source: csv, path: rows.csv, target: label, task: classification}
objective: {metric: accuracy}
training: {max_epochs: 5, early_stopping: {patience: 2}}
study: {strategy: random, pruner: none, final: {top_k: 2, folds: 2, ensemble: 2}}
params:
  units: {type: int, low: 8, high: 32}
  lr: {type: float, low: 5e-3, high: 5e-2, log: true}
  batch_size: 32
"""


def _rows(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 4))
    label = np.where(x[:, 0] + 0.5 * x[:, 1] - x[:, 2] * x[:, 3] > 0, "yes", "no")
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3],
                         "label": label})


def test_the_choice_never_looks_at_the_test_split(workdir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rows with the test rows' features scrambled: identical trials, re-evaluation and
    choice; only the test figures change."""
    frame = _rows()
    (workdir / "one").mkdir()
    (workdir / "two").mkdir()
    frame.to_csv(workdir / "one" / "rows.csv", index=False)
    monkeypatch.chdir(workdir / "one")
    space = load_space(write_space(workdir / "one", TABLE, "table.yaml"))
    test_rows = final_dataset(space.data, holdout=False).test_rows
    assert test_rows is not None
    scrambled = frame.copy()
    scrambled.loc[test_rows, ["a", "b", "c", "d"]] = \
        np.random.default_rng(0).normal(size=(len(test_rows), 4)) * 3
    scrambled.to_csv(workdir / "two" / "rows.csv", index=False)
    results = []
    for folder in ("one", "two"):
        path = write_space(workdir / folder, TABLE, "table.yaml")
        monkeypatch.chdir(workdir / folder)
        results.append(run_study(load_space(path), options(workdir / folder, trials=4)))
    first, second = results
    assert {k: v for k, v in first.final.items() if not k.endswith("_s")} == \
        {k: v for k, v in second.final.items() if not k.endswith("_s")}
    assert first.test_model == second.test_model
    assert first.test_metrics != second.test_metrics


def test_a_table_study_logs_a_raw_row_scorer_of_its_refit_model(
        workdir: Path, tracking_uri: str) -> None:
    frame = _rows()
    frame.loc[::7, "b"] = np.nan
    frame.to_csv(workdir / "rows.csv", index=False)
    text = TABLE.replace("task: classification}", "task: classification, missing: median}")
    space = load_space(write_space(workdir, text, "table.yaml"))
    result = run_study(space, options(workdir, trials=2, tracking=True, log_model=True,
                                      tracking_uri=tracking_uri, experiment="refit-table"))
    assert "refit on train + validation (240 rows" in str(result.test_model)
    parent = runs_of(tracking_uri, "refit-table")[0][0]
    rows = final_dataset(space.data, holdout=False).test_rows
    assert rows is not None
    raw = frame.iloc[rows]
    probs = mlflow.pyfunc.load_model(parent.data.tags["scorer_uri"]).predict(
        raw.drop(columns="label"))
    predicted = probs.columns[probs.to_numpy().argmax(axis=1)]
    assert np.mean(predicted == raw["label"].to_numpy()) == \
        pytest.approx(result.test_metrics["accuracy"])


CUSTOM = custom_space("refit_custom", 3)


def _trainer(params: Mapping[str, Any], reporter: tuner.Reporter) -> float:
    for epoch in range(1, 4):
        reporter.report(epoch, {"val_score": params["x"] * epoch / 3})
    return float(params["x"])


def test_a_custom_trainer_refits_through_its_hook_and_nothing_changes_without_one(
        workdir: Path) -> None:
    space = parse_space(CUSTOM)
    plain = run_study(space, options(workdir), objective=_trainer)
    assert plain.test_metrics == {} and plain.test_model is None
    calls: list[tuple[dict[str, Any], int, int]] = []

    def trainer(params: Mapping[str, Any], reporter: tuner.Reporter) -> float:
        return _trainer(params, reporter)

    def refit(params: Mapping[str, Any], seed: int, epochs: int) -> dict[str, float]:
        calls.append((dict(params), seed, epochs))
        return {"score": 0.5}

    trainer.refit = refit  # type: ignore[attr-defined]
    journal = workdir / "hook.journal"
    hooked = run_study(space, options(workdir, storage=str(journal), refit=False),
                       objective=trainer)
    assert calls == [] and hooked.test_metrics == {}  # --no-refit: the hook is not called
    hooked = run_study(space, options(workdir, storage=str(journal)), objective=trainer)
    best = load_study(hooked.study, journal).best_trial
    assert calls == [({"x": best.params["x"]}, best.user_attrs["seed"], 3)]
    assert hooked.test_metrics == {"score": 0.5}
    assert hooked.test_model == f"trial {best.number}, refit by the trainer's hook (3 epochs)"


def test_cli_no_refit_and_best_show_the_choice_and_its_optimism(
        workdir: Path, tracking_uri: str) -> None:
    space = write_space(workdir, DIGITS % "{top_k: 2, folds: 2}", "digits.yaml")
    env = subprocess_env(tracking_uri)
    run = subprocess.run([*tuner_command(), "run", str(space), "--trials", "3", "--json",
                          "--no-refit", "--no-model", "--threads", "1"], cwd=workdir, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert "trained on the train split" in summary["test_model"]
    assert summary["final"]["kind"] == "re-evaluated" and summary["final"]["refit"] is False
    best = subprocess.run([*tuner_command(), "best", summary["study"]], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)
    assert best.returncode == 0, best.stderr
    optimism = summary["final"]["optimism"]
    assert f"final model: re-evaluated, trial {summary['final']['trials'][0]}" in best.stdout
    assert f"optimism of the best value: {optimism:+.4g}" in best.stdout
    assert math.isfinite(optimism)


def test_refit_is_checked_like_every_option() -> None:
    with pytest.raises(tuner.OptionError, match="refit: must be true or false"):
        RunOptions(refit="no")  # type: ignore[arg-type]
    with pytest.raises(tuner.OptionError, match="refit: must be true or false"):
        tuner.CompareOptions(refit=None)  # type: ignore[arg-type]


def test_evaluate_and_export_follow_the_trial_the_study_chose() -> None:
    import optuna

    from tuner.search import final_trial

    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.9, 0.7):
        study.add_trial(optuna.trial.create_trial(value=value))
    assert final_trial(study).number == 1  # nothing recorded: the best trial
    study.set_user_attr(ATTR_FINAL, {"kind": "re-evaluated", "trials": [2]})
    assert final_trial(study).number == 2
    study.set_user_attr(ATTR_FINAL, {"kind": "ensemble", "trials": [0, 1, 2]})
    assert final_trial(study).number == 0  # an ensemble's best member
