"""Failures inside trials: a custom trainer that raises fails that trial, with the exception's
one-line summary and where it happened as the reason, and the study goes on (as with a NaN loss);
a study whose every trial failed says so, and the CLI exits with code 1."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
