"""Failures inside trials: a custom trainer that raises fails that trial, with the exception's
one-line summary and where it happened as the reason, and the study goes on (as with a NaN loss);
a study whose every trial failed says so, and the CLI exits with code 1."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

import tuner
from tests.conftest import subprocess_env, tuner_command, write_space
from tests.helpers import load_study, runs_of

SPACE = """\
name: flaky
model: custom
trainer: flaky.py:train
objective: {metric: score, direction: maximize}
training: {max_epochs: 2, early_stopping: false}
study: {strategy: random, trials: 4, seed: 0, pruner: none}
params:
  width: {type: int, low: 1, high: 8}
"""

TRAINER = """\
def train(params, reporter):
    reporter.report(1, {"val_score": float(params["width"])})
    if FAIL(params):
        raise ValueError(f"width {params['width']} is not supported\\nsecond line")
"""


def opts(folder: Path, **kw: Any) -> tuner.RunOptions:
    return tuner.RunOptions(**{"storage": str(folder / "s.journal"), "progress": False,
                               "tracking": False, "threads": 1, "views": False, **kw})


def test_a_raising_trainer_fails_its_trial_and_the_study_goes_on(workdir: Path) -> None:
    def trainer(params: Mapping[str, Any], reporter: tuner.Reporter) -> float:
        if reporter.trial_number % 2:
            raise KeyError("missing_feature")
        if reporter.trial_number == 2:
            reporter.report(1, {"wrong_key": 1.0})  # tuner's own check, in the user's call
        return float(params["width"])

    space = tuner.parse_space(SPACE.replace("trainer: flaky.py:train\n", ""))
    result = tuner.run_study(space, opts(workdir, trials=4), objective=trainer)
    assert (result.n_complete, result.n_failed) == (1, 3) and not result.all_failed
    trials = load_study(result.study, workdir / "s.journal").trials
    reasons = {t.number: t.user_attrs.get("fail_reason") for t in trials}
    assert reasons[1].startswith("the trainer raised KeyError: 'missing_feature' "
                                 "(test_trial_failures.py:")
    assert "in trainer)" in reasons[1] and "\n" not in reasons[1]
    assert reasons[2].startswith("the trainer reported epoch 1 without the objective "
                                 "'val_score'")
    assert "(test_trial_failures.py:" in reasons[2]  # the user's line, not tuner's
    assert reasons[0] is None and trials[0].value == trials[0].params["width"]


def test_a_study_whose_every_trial_failed_says_so_and_exits_1(
        workdir: Path, tracking_uri: str) -> None:
    (workdir / "flaky.py").write_text(TRAINER.replace("FAIL(params)", "True"))
    space = write_space(workdir, SPACE, "flaky.yaml")
    run = subprocess.run([*tuner_command(), "run", str(space), "--json", "--quiet",
                          "--experiment", "all-failed", "--no-model"], cwd=workdir,
                         env=subprocess_env(tracking_uri), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1, run.stderr
    assert "tuner: every trial of study flaky-random-seed0 failed" in run.stderr
    out = json.loads(run.stdout)
    assert out["all_failed"] and out["n_failed"] == 4 and out["n_complete"] == 0
    assert any(note.startswith("every trial failed (4); the last: the trainer raised "
                               "ValueError: width") for note in out["notes"])
    _, trials = runs_of(tracking_uri, "all-failed")
    assert len(trials) == 4 and all(r.info.status == "FAILED" for r in trials)
    assert all("(flaky.py:4 in train)" in r.data.tags["fail_reason"] for r in trials)

    # Some trials failing is not a failed study: exit code 0, the failures counted.
    (workdir / "flaky.py").write_text(TRAINER.replace("FAIL(params)", "params['width'] > 4"))
    space = write_space(workdir, SPACE.replace("name: flaky", "name: half"), "half.yaml")
    run = subprocess.run([*tuner_command(), "run", str(space), "--json", "--quiet",
                          "--no-tracking", "--trials", "6"], cwd=workdir,
                         env=subprocess_env(tracking_uri), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["n_failed"] >= 1 and out["n_complete"] >= 1 and not out["all_failed"]


HUGE = """\
name: huge
data: {source: digits, val_fraction: 0.2, test_fraction: 0.2, seed: 0}
objective: {metric: accuracy}
training: {max_epochs: 1}
study: {strategy: grid, trials: 2, seed: 0, pruner: none}
params:
  n_layers: 16
  units: {type: categorical, choices: [8, 65536]}
"""


def test_training_bytes_counts_weights_their_copies_and_a_batchs_activations() -> None:
    from tuner.space import TrialConfig
    from tuner.training import training_bytes

    config = TrialConfig.from_params({"n_layers": 1, "units": 32})
    weights = 64 * 32 + 32 + 32 * 10 + 10
    assert training_bytes(config, 64, 10, 32) == 4 * (5 * weights + 3 * 32 * (64 + 32 + 10))


@pytest.mark.parametrize("pack", [None, 1])
def test_a_model_too_large_for_the_machine_fails_its_trial_before_it_is_built(
        workdir: Path, pack: int | None) -> None:
    """16 layers of 65,536 units need ~1.2 TB to train: built, they would bring the
    out-of-memory killer down on the study. The trial fails with the figures; the other runs."""
    space = tuner.load_space(write_space(workdir, HUGE, "huge.yaml"))
    result = tuner.run_study(space, opts(workdir, pack=pack, refit=False))
    assert (result.n_complete, result.n_failed) == (1, 1)
    (failed,) = [t for t in load_study(result.study, workdir / "s.journal").trials
                 if t.state.name == "FAIL"]
    assert failed.params == {"units": 65536}
    reason = failed.user_attrs["fail_reason"]
    assert reason.startswith("the model (16 hidden layers of up to 65536 units) needs about ")
    assert "GB to train, more than the" in reason and "lower the space's units" in reason


def test_tuner_train_refuses_a_model_too_large_in_one_line(workdir: Path,
                                                           tracking_uri: str) -> None:
    fixed = HUGE.replace("units: {type: categorical, choices: [8, 65536]}", "units: 65536")
    space = write_space(workdir, fixed.replace("study: {strategy: grid,", "study: {"), "fixed.yaml")
    done = subprocess.run([*tuner_command(), "train", str(space), "--no-tracking"], cwd=workdir,
                          env=subprocess_env(tracking_uri), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("tuner: error: the model (16 hidden layers of up to 65536 ")
    assert len(done.stderr.strip().splitlines()) == 1
