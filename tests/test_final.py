"""The final model: evaluate / export / train, the logged models scoring raw rows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import mlflow.pyfunc
import mlflow.pytorch
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from sklearn import datasets
from sklearn import metrics as skm

from tests.conftest import REPO, subprocess_env, tuner_command, write_space
from tests.helpers import load_study, runs_of
from tuner import RunOptions, TunerError, load_space, parse_space, run_study
from tuner.analysis import export_study
from tuner.data import final_dataset
from tuner.execution import FinalOptions, evaluate_study, train_space
from tuner.search import final_trial

DIGITS = """\
name: final_digits
data: {source: digits}
training:
  max_epochs: 4
  early_stopping: {patience: 2}
study: {strategy: random, pruner: none}
params:
  n_layers: {type: int, low: 1, high: 2}
  units: {type: int, low: 16, high: 48, per_layer: n_layers}
  lr: {type: float, low: 3e-3, high: 3e-2, log: true}
  batch_size: 64
"""


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def store(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading `models:/...` URIs asks the default tracking store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)


def tuner(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run([*tuner_command(), *args], cwd=cwd, env=subprocess_env(uri),
                          capture_output=True, text=True, timeout=300)


def options(tmp: Path, uri: str, experiment: str, **kw: object) -> RunOptions:
    base: dict[str, object] = dict(storage=str(tmp / "study.journal"), tracking_uri=uri,
                                   experiment=experiment, log_model=False, progress=False,
                                   threads=1, views=False, trials=2)
    base.update(kw)
    return RunOptions(**base)  # type: ignore[arg-type]


def test_evaluate_export_train_round_trip(workdir: Path, tracking_uri: str) -> None:
    study = run_study(load_space(write_space(workdir, DIGITS, "digits.yaml")),
                      options(workdir, tracking_uri, "final-digits"))
    journal = str(workdir / "study.journal")
    evaluated = tuner(["evaluate", study.study, "--storage", journal, "--register",
                       "digits-mlp", "--json", "--threads", "1"], workdir, tracking_uri)
    assert evaluated.returncode == 0, evaluated.stderr
    final = json.loads(evaluated.stdout)
    best = final_trial(load_study(study.study, journal))  # the trial the study chose
    assert final["origin"] == f"study {study.study}, trial {best.number}"
    assert final["epochs"] == best.user_attrs["best_epoch"]  # as many epochs as the kept weights
    assert final["rows"] == {"train": 1437, "early_stopping": 0, "test": 360}
    assert final["registered"] == "digits-mlp version 1"
    assert sum(map(sum, final["confusion"])) == 360

    client = MlflowClient(tracking_uri)
    run = client.get_run(final["mlflow_run_id"])
    assert run.data.tags["tuner.role"] == "final" and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == study.mlflow_parent_run_id
    assert run.data.metrics["test_f1_macro"] == pytest.approx(final["test_metrics"]["f1_macro"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "confusion_matrix.csv", "space.yaml"} <= artifacts
    png = Path(client.download_artifacts(run.info.run_id, "confusion_matrix.png", str(workdir)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    version = client.get_model_version("digits-mlp", "1")
    assert version.run_id == run.info.run_id

    # The registered PyTorch model scores raw digits rows and reproduces the printed figures.
    model = mlflow.pytorch.load_model("models:/digits-mlp/1")
    digits = datasets.load_digits()
    rows = final_dataset(load_space(workdir / "digits.yaml").data, holdout=False).test_rows
    with torch.inference_mode():
        probs = model(torch.as_tensor(digits.data[rows], dtype=torch.float32)).numpy()
    y = digits.target[rows]
    assert np.mean(probs.argmax(axis=1) == y) == pytest.approx(final["test_metrics"]["accuracy"])
    assert skm.f1_score(y, probs.argmax(axis=1), average="macro") == \
        pytest.approx(final["test_metrics"]["f1_macro"])

    exported = tuner(["export", study.study, "--storage", journal, "-o", "best.yaml"], workdir,
                     tracking_uri)
    assert exported.returncode == 0, exported.stderr
    config = load_space(workdir / "best.yaml")
    assert all(p.describe().startswith("fixed") for p in config.params)
    assert config.training.max_epochs == final["epochs"]
    trained = tuner(["train", "best.yaml", "--json", "--threads", "1", "--no-tracking"], workdir,
                    tracking_uri)
    assert trained.returncode == 0, trained.stderr
    again = json.loads(trained.stdout)
    assert again["params"] == final["params"] and again["seed"] == final["seed"]
    assert again["test_metrics"] == final["test_metrics"]  # the same model, trained again
    with pytest.raises(TunerError, match=r"best\.yaml exists"):
        export_study(study.study, journal, workdir / "best.yaml")


def _table(n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    age = rng.normal(45, 12, n).round()
    city = rng.choice(["paris", "lyon", "nice"], n)
    score = age / 10 + (city == "nice") * 3 + rng.normal(0, 1, n)
    frame = pd.DataFrame({"age": age, "city": city, "visits": rng.integers(0, 6, n),
                          "label": np.where(score > np.median(score), "high", "low")})
    frame.loc[rng.choice(n, 30, replace=False), "age"] = np.nan
    frame.loc[rng.choice(n, 30, replace=False), "city"] = None
    return frame


TABLE = """\
name: final_table
data: {source: csv, path: people.csv, target: label, task: classification, missing: median,
       class_weight: balanced}
objective: {metric: roc_auc}
training: {max_epochs: 4, early_stopping: false}
study: {strategy: random, pruner: none}
params:
  units: 16
  lr: {type: float, low: 5e-3, high: 2e-2, log: true}
"""


def _check_scorer(uri: str, frame: pd.DataFrame, rows: np.ndarray,
                  metrics: dict[str, float]) -> None:
    raw = frame.iloc[rows]
    assert raw.drop(columns="label").isna().any(axis=None)  # missing values in the scored rows
    probs = mlflow.pyfunc.load_model(uri).predict(raw.drop(columns="label"))
    assert list(probs.columns) == ["high", "low"]
    predicted = probs.columns[probs.to_numpy().argmax(axis=1)]
    y = raw["label"].to_numpy()
    assert np.mean(predicted == y) == pytest.approx(metrics["accuracy"])
    assert skm.roc_auc_score(y == "low", probs["low"]) == pytest.approx(metrics["roc_auc"],
                                                                       abs=1e-6)


def test_table_models_score_raw_rows_with_categories_and_missing_values(
        workdir: Path, tracking_uri: str) -> None:
    frame = _table()
    frame.to_csv(workdir / "people.csv", index=False)
    space = load_space(write_space(workdir, TABLE, "table.yaml"))
    study = run_study(space, options(workdir, tracking_uri, "final-table", trials=1,
                                     log_model=True))
    parents, _ = runs_of(tracking_uri, "final-table")
    test_rows = final_dataset(space.data, holdout=False).test_rows
    assert test_rows is not None
    # The study's own final model (refit on train + validation) and its scorer ...
    _check_scorer(parents[0].data.tags["scorer_uri"], frame, test_rows, study.test_metrics)
    # ... and the final model (trained on train + validation), logged with its own.
    final = evaluate_study(study.study, str(workdir / "study.journal"),
                           FinalOptions(tracking_uri=tracking_uri, threads=1))
    assert final.scorer_uri is not None and final.model_uri is not None
    _check_scorer(final.scorer_uri, frame, test_rows, final.test_metrics)


def test_train_regression_logs_residuals_and_scores_in_target_units(
        workdir: Path, tracking_uri: str) -> None:
    text = ("name: final_diabetes\ndata: {source: diabetes}\n"
            "training: {max_epochs: 5, early_stopping: false, loss: huber}\n"
            "params:\n  units: 32\n  lr: 0.01\n")
    space = load_space(write_space(workdir, text, "diabetes.yaml"))
    final = train_space(space, FinalOptions(tracking_uri=tracking_uri, threads=1))
    client = MlflowClient(tracking_uri)
    assert "residuals.png" in {a.path for a in client.list_artifacts(final.mlflow_run_id)}
    assert final.residuals is not None and final.confusion is None
    diabetes = datasets.load_diabetes()
    rows = final_dataset(space.data, holdout=False).test_rows
    model = mlflow.pytorch.load_model(final.model_uri)
    with torch.inference_mode():
        pred = model(torch.as_tensor(diabetes.data[rows], dtype=torch.float32)).numpy()
    rmse = float(np.sqrt(np.mean((pred - diabetes.target[rows]) ** 2)))
    assert rmse == pytest.approx(final.test_metrics["rmse"], rel=1e-4)


def test_train_needs_a_fixed_configuration_and_can_stop_early(workdir: Path) -> None:
    searched = load_space(write_space(workdir, DIGITS, "digits.yaml"))
    with pytest.raises(TunerError, match=r"params\.n_layers is searched"):
        train_space(searched, FinalOptions(tracking=False))
    fixed = parse_space("data: {source: iris}\ntraining: {max_epochs: 30, early_stopping: "
                        "{patience: 2}}\nparams:\n  n_layers: 2\n  units: [16, 8]\n  lr: 0.02\n",
                        file="iris.yaml")
    result = train_space(fixed, FinalOptions(tracking=False))
    assert result.params == {"n_layers": 2, "units_0": 16, "units_1": 8, "lr": 0.02}
    # A validation-sized slice of train + validation is kept apart to stop early on.
    assert result.rows == {"train": 96, "early_stopping": 24, "test": 30}
    assert 1 <= result.epochs <= 30


def test_the_reference_recipe_trains_as_shipped() -> None:
    space = load_space(REPO / "search_spaces" / "reference_mlp.yaml")
    result = train_space(space, FinalOptions(tracking=False))
    assert result.epochs == 10 and result.rows["train"] == 1437 and result.rows["test"] == 360
    assert result.params["units"] == 512 and result.params["lr_schedule"] == "inverse_time"
    assert result.test_metrics["accuracy"] > 0.9
    tuned = load_space(REPO / "search_spaces" / "reference_mlp_tuned.yaml")
    assert tuned.data == space.data  # the same split: their test figures compare
