"""One run loop for every mode: the same stopping rule through one process, two worker processes
and a multi-objective study; the GP guard through a real study; options checked once, with the
same errors from the API and the CLI; known points read as strictly as the space file; no thread
left behind by a tracker."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

import tuner
from tests.conftest import TINY_SPACE, subprocess_env, tuner_command, write_space
from tests.helpers import load_study
from tuner.search import ATTR_FALLBACK, open_storage

# A trainer file, so that worker processes (spawned) can import it from the space.
TRAINER = '''\
def flat_after_two(params, reporter):
    """Improves in trial 1, never after (later trials tie with it); with a second objective,
    trials 0 and 1 make the Pareto front and later ones only tie with trial 1."""
    score = 1.0 if reporter.trial_number >= 1 else 0.0
    reporter.report(1, {"val_score": score})
    return {"cost": 5.0 if reporter.trial_number else 0.0}
'''

FLAT = """\
name: flat
model: custom
trainer: flat_trainer.py:flat_after_two
objective: {metric: score, direction: maximize}
study: {strategy: random, trials: 40, seed: 0, pruner: none}
params:
  x: {type: float, low: 0.0, high: 1.0}
"""

FLAT_MULTI = FLAT.replace("objective: {metric: score, direction: maximize}",
                          "objectives: [{metric: score, direction: maximize},\n"
                          "             {metric: cost, direction: minimize, key: cost}]") \
    .replace("strategy: random", "strategy: nsga2")


def _run(workdir: Path, text: str, name: str, **kw: object) -> tuner.StudyResult:
    (workdir / "flat_trainer.py").write_text(TRAINER)
    space = tuner.load_space(write_space(workdir, text, f"{name}.yaml"))
    return tuner.run_study(space, tuner.RunOptions(
        storage=str(workdir / "loop.journal"), study_name=name, tracking=False,
        progress=False, threads=1, patience=3, **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["one process", "two workers", "multi-objective"])
def test_the_same_patience_rule_stops_every_mode(workdir: Path, mode: str) -> None:
    if mode == "two workers":
        result = _run(workdir, FLAT, "workers", workers=2)
    elif mode == "multi-objective":
        result = _run(workdir, FLAT_MULTI, "multi")
    else:
        result = _run(workdir, FLAT, "single")
    # Trial 1 is the last improvement (the last to join the front); 3 more, then the study
    # stops. Two workers may each have one trial running when the rule starts to hold.
    assert not result.interrupted and result.stopped is not None
    assert "--patience 3" in result.stopped
    finished = len(load_study(result.study, workdir / "loop.journal").trials)
    assert 5 <= finished <= (7 if mode == "two workers" else 5), finished
    assert any("--patience" in note for note in result.notes)


def test_timeout_holds_with_two_workers(workdir: Path) -> None:
    result = _run(workdir, FLAT, "timed", workers=2, timeout=1e-3)
    assert result.stopped is not None and "--timeout" in result.stopped
    # each worker runs the trial it started, then no trial starts
    assert len(load_study("timed", workdir / "loop.journal").trials) <= 2


def test_the_gp_guard_switches_to_tpe_in_a_real_study(workdir: Path) -> None:
    """Instant trials: choosing parameters with GP soon costs far more than the trial."""
    space = tuner.parse_space("""\
name: guard
model: custom
objective: {metric: score, direction: maximize}
study: {strategy: gp, trials: 18, seed: 0, pruner: none}
params:
  x: {type: float, low: 0.0, high: 1.0}
  y: {type: float, low: 0.0, high: 1.0}
""")
    result = tuner.run_study(space, tuner.RunOptions(
        storage=str(workdir / "guard.journal"), tracking=False, progress=False, threads=1),
        objective=lambda params, reporter: params["x"] * params["y"])
    assert result.n_complete == 18
    study = load_study(result.study, workdir / "guard.journal")
    assert "switching to TPESampler" in study.user_attrs[ATTR_FALLBACK]


@pytest.mark.parametrize("kwargs, api_message, flags, cli_message", [
    ({"trials": 0}, "trials: must be >= 1, got 0", ["--trials", "0"], "--trials: must be >= 1"),
    ({"threads": -1}, "threads: must be >= 1", ["--threads", "-1"], "--threads: must be >= 1"),
    ({"timeout": 0.0}, "timeout: must be a number of seconds > 0", ["--timeout", "0"],
     "--timeout: must be a number of seconds > 0"),
    ({"study_name": "../x"}, "study_name: '../x': use letters", ["--study", "../x"],
     "--study: '../x': use letters"),
    ({"workers": 0}, "workers: must be >= 1", ["--workers", "0"], "--workers: must be >= 1"),
])
def test_options_are_checked_once_with_the_same_errors_from_api_and_cli(
        workdir: Path, kwargs: dict[str, object], api_message: str, flags: list[str],
        cli_message: str) -> None:
    with pytest.raises(tuner.OptionError, match=api_message.replace("(", r"\(")):
        tuner.RunOptions(**kwargs)  # type: ignore[arg-type]
    space = write_space(workdir)
    done = subprocess.run([*tuner_command(), "run", str(space), *flags], cwd=workdir,
                          capture_output=True, text=True, env=subprocess_env("sqlite:///x.db"),
                          timeout=120)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tuner: error: ") and cli_message in last, last
    assert not (workdir / "tuner.journal").exists()  # nothing written


def test_known_points_are_read_as_strictly_as_the_space_file(workdir: Path) -> None:
    space = tuner.load_space(write_space(workdir))
    points = workdir / "points.yaml"
    points.write_text("- {n_layers: 1, units_0: 16, optimizer: adam, lr: 1e-3}\n")
    result = tuner.run_study(space, tuner.RunOptions(
        storage=str(workdir / "s.journal"), trials=1, tracking=False, progress=False,
        threads=1, enqueue_file=str(points)))
    trial = load_study(result.study, workdir / "s.journal").trials[0]
    assert trial.params["lr"] == 1e-3 and isinstance(trial.params["lr"], float)
    points.write_text("- {n_layers: 1, lr: 5.0}\n")
    with pytest.raises(tuner.SpaceError, match=r"points.yaml:1: 0.lr: 5.0 lies outside float"):
        tuner.run_study(space, tuner.RunOptions(storage=str(workdir / "t.journal"),
                                                tracking=False, enqueue_file=str(points)))
    assert not open_storage(str(workdir / "t.journal")).get_all_studies()  # nothing written


def test_a_tracker_leaves_no_thread_behind(workdir: Path, tracking_uri: str) -> None:
    space = tuner.load_space(write_space(workdir, TINY_SPACE.replace("trials: 3", "trials: 2")))
    before = {t.ident for t in threading.enumerate()}
    for seed in (0, 1):  # one tracker per study, as `compare` and notebooks make them
        tuner.run_study(space, tuner.RunOptions(
            storage=str(workdir / "t.journal"), seed=seed, tracking_uri=tracking_uri,
            experiment="threads", progress=False, views=False, log_model=False, threads=1))
    left = [t.name for t in threading.enumerate() if t.ident not in before]
    assert "tuner-mlflow" not in left, left


def test_importing_tuner_changes_no_global_state() -> None:
    """A notebook keeps its matplotlib backend, its loggers and its environment."""
    code = """
import logging, os, matplotlib
import mlflow, optuna, torch  # their own import-time set-up is theirs, not tuner's
matplotlib.use("svg")
levels = {n: logging.getLogger(n).level for n in ("mlflow", "alembic")}
import importlib, pkgutil, tuner
for m in pkgutil.walk_packages(tuner.__path__, "tuner."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert {n: logging.getLogger(n).level for n in ("mlflow", "alembic")} == levels
assert "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT" not in os.environ
print("clean")
"""
    env = subprocess_env("sqlite:///unused.db")
    env.pop("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", None)  # set by this process's trackers
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0 and "clean" in done.stdout, done.stderr
