"""Stopping a whole study: patience on the best value, a wall-clock budget, from API and CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tuner
from tests.conftest import subprocess_env, tuner_command, write_space
from tests.helpers import load_study

FLAT = """\
name: flat
model: custom
objective: {metric: score, direction: minimize}
study: {strategy: random, trials: 30, seed: 0, pruner: none}
params:
  x: {type: float, low: 0.0, high: 1.0}
"""


def opts(tmp: Path, **kw: Any) -> tuner.RunOptions:
    base: dict[str, Any] = dict(storage=str(tmp / "stop.journal"), progress=False,
                                tracking=False, threads=1)
    base.update(kw)
    return tuner.RunOptions(**base)


def test_patience_stops_when_the_best_value_stops_improving(workdir: Path) -> None:
    def trainer(params: Mapping[str, Any], reporter: tuner.Reporter) -> float:
        # improves in trials 0-3 (3, 2, 1, 0), then never again
        return float(max(0, 3 - reporter.trial_number))

    result = tuner.run_study(tuner.parse_space(FLAT), opts(workdir, patience=4),
                             objective=trainer)
    assert result.n_complete == 4 + 4 and not result.interrupted
    assert result.best_trial == 3 and result.best_value == 0.0
    assert any("did not improve in the last 4 trials" in n for n in result.notes)
    # extended later, the rule is checked after each new trial: one more runs here
    again = tuner.run_study(tuner.parse_space(FLAT), opts(workdir, patience=2),
                            objective=trainer)
    assert again.n_complete == 8 + 1 and again.best_trial == 3


def test_timeout_ends_cleanly_after_the_running_trial(workdir: Path, tracking_uri: str) -> None:
    calls: list[int] = []

    def slow(params: Mapping[str, Any], reporter: tuner.Reporter) -> float:
        calls.append(reporter.trial_number)
        return params["x"]

    result = tuner.run_study(tuner.parse_space(FLAT), opts(workdir, timeout=1e-6,
                                                           study_name="t"), objective=slow)
    assert calls == [0] and result.n_complete == 1 and not result.interrupted
    assert any("--timeout" in n for n in result.notes)
    study = load_study("t", workdir / "stop.journal")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]

    # The CLI: exit 0, a finished parent run; a bad value is refused before anything runs.
    space = write_space(workdir)
    run = subprocess.run([*tuner_command(), "run", str(space), "--timeout", "0.001", "--json",
                          "--storage", "cli.journal", "--experiment", "stop-cli"], cwd=workdir,
                         env=subprocess_env(tracking_uri), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["n_complete"] + out["n_pruned"] == 1 and not out["interrupted"]
    assert "accuracy" in out["test_metrics"]
    bad = subprocess.run([*tuner_command(), "run", str(space), "--patience", "0",
                          "--storage", "bad.journal"], cwd=workdir,
                         env=subprocess_env(tracking_uri), capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "--patience: must be >= 1" in bad.stderr
    assert not (workdir / "bad.journal").exists()
