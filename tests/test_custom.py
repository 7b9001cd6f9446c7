"""Custom objectives through the public API and the CLI: a user's trainer instead of the MLP."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest

import tuner
from tests.conftest import REPO, subprocess_env, tuner_command, write_space
from tests.helpers import load_study, metric_history, runs_of

CUSTOM = """\
name: custom
model: custom
objective: {metric: score, direction: maximize}
training: {max_epochs: 6, early_stopping: {patience: 2}}
study: {strategy: tpe, trials: 4, seed: 0, pruner: none}
params:
  width: {type: int, low: 1, high: 9}
  shape: {type: categorical, choices: [flat, peak]}
"""


def opts(tmp: Path, **kw: Any) -> tuner.RunOptions:
    base: dict[str, Any] = dict(storage=str(tmp / "study.journal"), progress=False,
                                tracking=False, threads=1, views=False)
    base.update(kw)
    return tuner.RunOptions(**base)


def peaked(params: Mapping[str, Any], reporter: tuner.Reporter) -> dict[str, float]:
    """Improves for `width` epochs, then falls: early stopping must end it `patience` later."""
    for epoch in range(1, reporter.max_epochs + 1):
        score = min(epoch, params["width"]) - max(0, epoch - params["width"]) * 0.5
        reporter.report(epoch, {"val_score": float(score), "train_loss": 1.0 / epoch})
        if reporter.should_stop:
            break
    return {"epochs_seen": float(reporter.epochs)}


def test_a_custom_trainer_gets_tracking_and_early_stopping_bookkeeping(
        workdir: Path, tracking_uri: str) -> None:
    space = tuner.parse_space(CUSTOM)
    result = tuner.run_study(space, opts(workdir, tracking=True, tracking_uri=tracking_uri,
                                         experiment="custom-api"), objective=peaked)
    assert result.n_complete == 4 and result.n_failed == 0
    study = load_study(result.study, workdir / "study.journal")
    for trial in study.trials:
        width = trial.params["width"]
        # best value: the peak at epoch `width` (capped by max_epochs 6)
        assert trial.value == pytest.approx(min(width, 6))
        assert trial.user_attrs["best_epoch"] == min(width, 6)
    assert result.best_value == max(t.value for t in study.trials)
    parents, runs = runs_of(tracking_uri, "custom-api")
    assert len(parents) == 1 and len(runs) == 4
    assert parents[0].data.metrics["best_value"] == result.best_value
    for run in runs:
        width = int(run.data.params["width"])
        history = metric_history(tracking_uri, run.info.run_id, "val_score")
        # patience 2: the run stops two epochs after the peak (or at max_epochs)
        assert len(history) == min(width + 2, 6)
        assert int(run.data.tags["epochs"]) == len(history)


def test_pruning_reaches_a_custom_trainer(workdir: Path) -> None:
    text = CUSTOM.replace("pruner: none", "pruner: {name: median, startup_trials: 1, "
                          "warmup_epochs: 0}").replace("trials: 4", "trials: 6")
    space = tuner.parse_space(text)
    seen: list[int] = []

    def trainer(params: Mapping[str, Any], reporter: tuner.Reporter) -> None:
        seen.append(reporter.trial_number)
        # trial 0 is very good, every later one is worse from the first epoch on
        base = 100.0 if reporter.trial_number == 0 else 0.0
        for epoch in range(1, reporter.max_epochs + 1):
            reporter.report(epoch, {"val_score": base + epoch})

    result = tuner.run_study(space, opts(workdir), objective=trainer)
    assert result.n_pruned >= 4 and result.best_trial == 0
    assert result.best_value == 106.0  # the trainer returned None: the best reported epoch


def test_bad_custom_spaces_and_trainers(workdir: Path) -> None:
    with pytest.raises(tuner.SpaceError, match="unknown parameter 'width'"):
        tuner.parse_space(CUSTOM.replace("model: custom\n", "").replace(
            "objective: {metric: score, direction: maximize}\n", ""))
    with pytest.raises(tuner.SpaceError, match="model"):
        tuner.parse_space(CUSTOM.replace("model: custom", "model: cnn"))
    mlp = tuner.load_space(write_space(workdir))
    with pytest.raises(tuner.SpaceError, match="model: custom"):
        tuner.run_study(mlp, opts(workdir), objective=peaked)
    silent = tuner.parse_space(CUSTOM)
    result = tuner.run_study(silent, opts(workdir, trials=1, study_name="nan"),
                             objective=lambda p, r: {"val_score": math.nan})
    assert result.n_failed == 1 and result.n_complete == 0
    with pytest.raises(tuner.TunerError, match="needs a trainer"):
        tuner.run_study(silent, opts(workdir, trials=1, study_name="none"))


def test_the_cnn_example_runs_from_the_cli_and_missing_trainers_write_nothing(
        workdir: Path, tracking_uri: str) -> None:
    example = REPO / "examples" / "custom_cnn.yaml"
    # two worker processes: each imports the trainer named in the space file
    run = subprocess.run([*tuner_command(), "run", str(example), "--trials", "2", "--json",
                          "--workers", "2",
                          "--storage", "cnn.journal", "--experiment", "custom-cnn"],
                         cwd=workdir, env=subprocess_env(tracking_uri), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["n_complete"] + out["n_pruned"] == 2 and out["best_value"] > 0.5
    assert set(out["best_params"]) == {"channels", "kernel", "dropout", "lr"}
    parents, runs = runs_of(tracking_uri, "custom-cnn")
    assert len(parents) == 1 and len(runs) == 2
    assert all(r.data.metrics["val_accuracy"] > 0 for r in runs)

    bad = write_space(workdir, CUSTOM + "trainer: nowhere.py:train\n", "bad.yaml")
    run = subprocess.run([*tuner_command(), "run", str(bad), "--storage", "bad.journal",
                          "--no-tracking"], cwd=workdir, env=subprocess_env(tracking_uri),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "nowhere.py" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(workdir / "bad.journal")))
    assert storage.get_all_studies() == []
