"""Studies on a real Optuna journal storage with a real MLflow SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pytorch
import numpy as np
import optuna
import pytest
import torch

from tests.conftest import TINY_SPACE, write_space
from tests.helpers import load_study, metric_history, runs_of
from tuner import RunOptions, TunerError, load_space, run_study
from tuner.search import ATTR_BEST_RUN, ATTR_PARENT_RUN, TRIAL_PARAMS, best_run


def options(tmp: Path, uri: str, experiment: str, **kw) -> RunOptions:
    base = dict(storage=str(tmp / "study.journal"), tracking_uri=uri, experiment=experiment,
                log_model=False, progress=False, threads=1, views=False)
    base.update(kw)
    return RunOptions(**base)


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe", "gp", "cmaes", "qmc"])
def test_each_strategy_leaves_one_parent_and_a_child_run_per_trial(
        workdir: Path, tracking_uri: str, strategy: str) -> None:
    space = load_space(write_space(workdir))
    experiment = f"strategy-{strategy}"
    result = run_study(space, options(workdir, tracking_uri, experiment, strategy=strategy,
                                      trials=3))
    assert result.n_complete + result.n_pruned == 3 and result.n_failed == 0
    assert result.strategy == strategy
    assert result.tracking_background_s > 0  # trial runs were written by the writer thread
    parents, trials = runs_of(tracking_uri, experiment)
    assert len(parents) == 1 and len(trials) == 3
    parent = parents[0]
    assert parent.info.run_id == result.mlflow_parent_run_id
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["strategy"] == strategy
    assert parent.data.tags["study"] == result.study
    assert "test_accuracy" in parent.data.metrics
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert run.data.tags["state"] == "COMPLETE"
        epochs = int(run.data.tags["epochs"])
        for key in ("train_loss", "val_loss", "val_accuracy"):
            history = metric_history(tracking_uri, run.info.run_id, key)
            assert [m.step for m in sorted(history, key=lambda m: m.step)] == \
                list(range(1, epochs + 1))
        assert set(run.data.params) >= {"n_layers", "optimizer", "lr", "batch_size"}


def test_grid_covers_every_point_exactly_once_and_a_rerun_adds_nothing(
        workdir: Path, tracking_uri: str) -> None:
    space = load_space(write_space(workdir))
    grid = space.params.grid()
    opts = options(workdir, tracking_uri, "grid-exact", strategy="grid")
    first = run_study(space, opts)
    assert first.n_complete + first.n_pruned == len(grid) == 8
    study = load_study(first.study, opts.storage)
    seen = [json.dumps(t.user_attrs[TRIAL_PARAMS], sort_keys=True) for t in study.trials]
    assert sorted(seen) == sorted(json.dumps(p, sort_keys=True) for p in grid)
    again = run_study(space, opts)
    assert len(load_study(first.study, opts.storage).trials) == 8
    assert again.mlflow_parent_run_id == first.mlflow_parent_run_id


def test_resume_continues_numbers_and_reuses_the_parent_run(
        workdir: Path, tracking_uri: str) -> None:
    space = load_space(write_space(workdir))
    first = run_study(space, options(workdir, tracking_uri, "resume", trials=2))
    second = run_study(space, options(workdir, tracking_uri, "resume", trials=4))
    assert second.mlflow_parent_run_id == first.mlflow_parent_run_id
    study = load_study(first.study, str(workdir / "study.journal"))
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    parents, trials = runs_of(tracking_uri, "resume")
    assert len(parents) == 1
    assert sorted(int(r.data.tags["trial_number"]) for r in trials) == [0, 1, 2, 3]
    # The best trial's run is recorded whichever run of the study trained it.
    by_number = {int(r.data.tags["trial_number"]): r.info.run_id for r in trials}
    assert best_run(study, study.best_trial.number) == by_number[study.best_trial.number]


def test_a_best_run_record_that_does_not_hold_is_not_used() -> None:
    study = optuna.create_study()
    study.set_user_attr(ATTR_PARENT_RUN, "p" * 32)
    cases = {"held": ({"trial": 3, "run": "r" * 32, "parent": "p" * 32}, "r" * 32),
             "another trial": ({"trial": 4, "run": "r" * 32, "parent": "p" * 32}, None),
             "another parent": ({"trial": 3, "run": "r" * 32, "parent": "q" * 32}, None),
             "no run": ({"trial": 3, "parent": "p" * 32}, None),
             "not a run id": ({"trial": 3, "run": ["r"], "parent": "p" * 32}, None),
             "not a record": ("r" * 32, None)}
    for case, (record, expected) in cases.items():
        study.set_user_attr(ATTR_BEST_RUN, record)
        assert best_run(study, 3) == expected, case


def test_resume_with_a_changed_space_is_refused_naming_the_change(
        workdir: Path, tracking_uri: str) -> None:
    run_study(load_space(write_space(workdir)), options(workdir, tracking_uri, "changed",
                                                        trials=1))
    changed = write_space(workdir, TINY_SPACE.replace("high: 1e-2", "high: 5e-2"))
    with pytest.raises(TunerError, match=r"params\.lr\.high: 0\.01 -> 0\.05"):
        run_study(load_space(changed), options(workdir, tracking_uri, "changed", trials=2))
    study = load_study("tiny-random-seed0", workdir / "study.journal")
    assert len(study.trials) == 1


def test_a_nan_loss_fails_that_trial_and_the_study_goes_on(
        workdir: Path, tracking_uri: str) -> None:
    text = """\
    data: {source: diabetes}
    training: {max_epochs: 3}
    study: {strategy: grid, pruner: none}
    params:
      optimizer: {type: categorical, choices: [sgd]}
      lr: {type: float, low: 1e-3, high: 5.0, grid: [5.0, 1e-3]}
      momentum: 0.9
    """
    space = load_space(write_space(workdir, text, "diverge.yaml"))
    result = run_study(space, options(workdir, tracking_uri, "nan"))
    assert (result.n_complete, result.n_failed) == (1, 1)
    assert result.best_params["lr"] == pytest.approx(1e-3)
    study = load_study(result.study, str(workdir / "study.journal"))
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert "non-finite training loss" in failed[0].user_attrs["fail_reason"]
    _, trials = runs_of(tracking_uri, "nan")
    by_state = {r.data.tags["state"]: r for r in trials}
    assert by_state["FAIL"].info.status == "FAILED"
    assert "non-finite" in by_state["FAIL"].data.tags["fail_reason"]
    assert by_state["COMPLETE"].info.status == "FINISHED"


def test_the_same_seed_twice_gives_identical_trials(workdir: Path, tracking_uri: str) -> None:
    space = load_space(write_space(workdir))
    runs = []
    for i in range(2):
        result = run_study(space, options(workdir, tracking_uri, f"seed-{i}", strategy="tpe",
                                          trials=4, seed=7, storage=str(workdir / f"s{i}.journal")))
        study = load_study(result.study, str(workdir / f"s{i}.journal"))
        runs.append([(t.params, t.value, t.user_attrs["seed"]) for t in study.trials])
    assert runs[0] == runs[1]
    other = run_study(space, options(workdir, tracking_uri, "seed-x", strategy="tpe", trials=4,
                                     seed=8, storage=str(workdir / "s8.journal")))
    study = load_study(other.study, str(workdir / "s8.journal"))
    assert [t.params for t in study.trials] != [r[0] for r in runs[0]]


def test_the_best_model_is_logged_and_scores_raw_test_rows(
        workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    space = load_space(write_space(workdir))
    result = run_study(space, options(workdir, tracking_uri, "model", trials=2, log_model=True))
    assert result.model_uri
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("model").experiment_id
    logged = client.search_logged_models([experiment])  # the UI's "Logged models" lists these
    assert [(m.source_run_id, m.model_id) for m in logged] == [
        (result.mlflow_parent_run_id, result.model_uri.removeprefix("models:/"))]
    model = mlflow.pytorch.load_model(result.model_uri)
    from tuner.data import load_dataset

    data = load_dataset(space.data)
    scaler = data.feature_scaler
    raw = data.test.x.numpy() * scaler.scale + scaler.mean  # the rows as the file had them
    with torch.inference_mode():
        probs = model(torch.as_tensor(raw, dtype=torch.float32)).numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = float(np.mean(probs.argmax(axis=1) == data.test.y.numpy()))
    assert accuracy == pytest.approx(result.test_metrics["accuracy"])


def test_the_model_goes_to_the_study_s_experiment_beside_a_notebook_s_own_run(
        workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a notebook the caller may have an experiment set and a run open: the study's model is
    still logged in the study's experiment, from its parent run, and the caller's run stays
    theirs."""
    from mlflow.tracking import fluent

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    # MLflow keeps the caller's experiment in a global: restored for the tests that follow.
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    mlflow.set_experiment("the-callers-own")
    space = load_space(write_space(workdir))
    with mlflow.start_run() as mine:
        result = run_study(space, options(workdir, tracking_uri, "study-exp", trials=1,
                                          log_model=True))
        assert mlflow.active_run().info.run_id == mine.info.run_id
    client = mlflow.MlflowClient(tracking_uri)
    studies = client.get_experiment_by_name("study-exp").experiment_id
    theirs = client.get_experiment_by_name("the-callers-own").experiment_id
    assert [m.source_run_id for m in client.search_logged_models([studies])] == [
        result.mlflow_parent_run_id]
    assert client.search_logged_models([theirs]) == []
    assert client.get_run(mine.info.run_id).info.status == "FINISHED"
