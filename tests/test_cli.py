"""The `tuner` command as a user runs it: real processes, exit codes, stdout/stderr."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import subprocess_env, tuner_command, write_space
from tests.helpers import load_study, runs_of
from tests.services import training_trial
from tuner import __version__
from tuner.cli import build_parser, main
from tuner.cli._reference import documented, expanded_help, subcommands

SLOW_SPACE = """\
name: slow
data: {source: digits}
training:
  max_epochs: 8
  early_stopping: false
study: {strategy: random, trials: 2, pruner: none}
params:
  n_layers: 3
  units: 384
  lr: {type: float, low: 1e-4, high: 1e-3, log: true}
  batch_size: 8
"""


def tuner(args: list[str], cwd: Path, uri: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*tuner_command(), *args], cwd=cwd, env=subprocess_env(uri),
                          capture_output=True, text=True, timeout=timeout)


def test_a_bad_space_exits_2_with_one_line_and_writes_nothing(
        workdir: Path, tracking_uri: str) -> None:
    bad = write_space(workdir, "params:\n  lr: {type: float, low: 1, high: 0.1}\n", "bad.yaml")
    result = tuner(["run", str(bad), "--experiment", "never-created"], workdir, tracking_uri)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "bad.yaml:2: params.lr.low" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (workdir / "tuner.journal").exists()
    assert MlflowClient(tracking_uri).get_experiment_by_name("never-created") is None


def test_validate_lists_parameters_and_grid_size(workdir: Path, tracking_uri: str) -> None:
    space = write_space(workdir)
    result = tuner(["validate", str(space), "--json"], workdir, tracking_uri)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["grid_size"] == 8
    assert {p["name"] for p in info["params"]} >= {"n_layers", "units_0", "units_1", "momentum"}
    assert next(p for p in info["params"] if p["name"] == "momentum")["when"] == \
        "optimizer == 'sgd'"
    plain = tuner(["validate", str(space)], workdir, tracking_uri)
    assert "grid size: 8" in plain.stdout


def test_run_json_then_studies_and_best(workdir: Path, tracking_uri: str) -> None:
    space = write_space(workdir)
    result = tuner(["run", str(space), "--trials", "2", "--json", "--no-model",
                    "--experiment", "cli-json"], workdir, tracking_uri)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    for key in ("study", "strategy", "best_value", "best_params", "n_complete", "n_pruned",
                "n_failed", "wall_s", "test_metrics", "mlflow_experiment_id",
                "mlflow_parent_run_id"):
        assert key in summary
    assert summary["n_complete"] == 2 and 0 < summary["best_value"] <= 1
    assert 0 < summary["test_metrics"]["accuracy"] <= 1
    assert (workdir / "tuner.journal").exists()  # the default storage, in the working folder

    listed = json.loads(tuner(["studies", "--json"], workdir, tracking_uri).stdout)
    assert [s["study"] for s in listed["studies"]] == [summary["study"]]
    assert listed["studies"][0]["states"] == {"COMPLETE": 2}

    info, loaded_mlflow = _best(summary["study"], workdir, tracking_uri)
    assert info["value"] == summary["best_value"]
    run = MlflowClient(tracking_uri).get_run(info["mlflow_run_id"])
    assert run.data.tags["trial_number"] == str(info["trial"])
    assert run.data.tags["mlflow.parentRunId"] == summary["mlflow_parent_run_id"]
    # The study recorded its best trial's run at its end: MLflow's import is not needed.
    assert not loaded_mlflow

    # A record that no longer holds (another trial, another parent run): MLflow is asked.
    study = load_study(summary["study"], workdir / "tuner.journal")
    noted = study.user_attrs["tuner.best_run"]
    assert noted == {"trial": info["trial"], "run": info["mlflow_run_id"],
                     "parent": summary["mlflow_parent_run_id"]}
    for stale in ({**noted, "trial": noted["trial"] + 1, "run": "0" * 32},
                  {**noted, "parent": "f" * 32, "run": "0" * 32}):
        study.set_user_attr("tuner.best_run", stale)
        again, loaded_mlflow = _best(summary["study"], workdir, tracking_uri)
        assert again["mlflow_run_id"] == info["mlflow_run_id"] and loaded_mlflow

    missing = tuner(["best", "no-such-study"], workdir, tracking_uri)
    assert missing.returncode == 2 and "no study 'no-such-study'" in missing.stderr


def _best(study: str, workdir: Path, tracking_uri: str) -> tuple[dict, bool]:
    """`tuner best STUDY --json` in a fresh process: what it printed, and whether it imported
    MLflow."""
    script = ("import sys\nfrom tuner.cli import main\ncode = main(sys.argv[1:])\n"
              "print('mlflow' in sys.modules, file=sys.stderr)\nsys.exit(code)\n")
    best = subprocess.run([sys.executable, "-c", script, "best", study, "--json"], cwd=workdir,
                          env=subprocess_env(tracking_uri), capture_output=True, text=True,
                          timeout=120)
    assert best.returncode == 0, best.stderr
    return json.loads(best.stdout), best.stderr.strip().splitlines()[-1] == "True"


def test_a_storage_password_is_never_printed(workdir: Path, tracking_uri: str) -> None:
    space = write_space(workdir)
    url = "postgresql://tuner:hunter2secret@127.0.0.1:1/nodb"
    result = tuner(["run", str(space), "--storage", url], workdir, tracking_uri)
    assert result.returncode == 2
    assert "hunter2secret" not in result.stderr + result.stdout
    assert "tuner:***@127.0.0.1" in result.stderr


def test_sigint_ends_runs_killed_and_the_study_resumes(workdir: Path, tracking_uri: str) -> None:
    space = write_space(workdir, SLOW_SPACE, "slow.yaml")
    # One trial at a time (a pack's Ctrl-C: tests/test_packs.py).
    args = ["run", str(space), "--experiment", "sigint", "--no-model", "--quiet", "--pack", "1",
            "--threads", "1"]
    proc = subprocess.Popen([*tuner_command(), *args], cwd=workdir,
                            env=subprocess_env(tracking_uri), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # The first trial is training (its MLflow run may show a moment later: a writer process
    # creates it).
    training = training_trial(str(workdir / "tuner.journal"), "slow-random-seed0", 0.5)
    assert training.number == 0
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err

    parents, trials = runs_of(tracking_uri, "sigint")
    assert [r.info.status for r in trials] == ["KILLED"]
    assert [r.info.status for r in parents] == ["KILLED"]
    study = load_study("slow-random-seed0", workdir / "tuner.journal")
    interrupted = study.trials[0]
    assert interrupted.state.name == "FAIL" and interrupted.user_attrs["interrupted"]
    assert study.trials[1].state.name == "WAITING"  # re-queued with the same parameters

    resumed = tuner([*args[:-2], "--trials", "1", "--threads", "1"], workdir, tracking_uri)
    assert resumed.returncode == 0, resumed.stderr
    study = load_study("slow-random-seed0", workdir / "tuner.journal")
    assert study.trials[1].state.name == "COMPLETE"
    assert study.trials[1].params == interrupted.params
    parents, trials = runs_of(tracking_uri, "sigint")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert "RUNNING" not in {r.info.status for r in trials}


def test_every_argument_says_what_it_does_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    """Mechanical, so that every new flag is held to it too."""
    parser = build_parser()
    commands = subcommands(parser)
    assert {"run", "worker", "compare", "ui", "dashboard", "evaluate"} <= set(commands)
    for name, (summary, sub) in commands.items():
        assert summary.strip(), f"`tuner {name}` has no help line"
        for action in [*documented(sub), *documented(parser)]:
            text = expanded_help(sub, action)
            where = f"tuner {name} {'/'.join(action.option_strings) or action.dest}"
            assert text.strip(), f"{where} has no help line"
            if action.option_strings and not action.required:
                assert "default" in text, f"{where}: the help does not say the default: {text!r}"
    worker_help = commands["worker"][1].format_help()
    assert "--dask" not in worker_help  # `tuner worker` has no --dask
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"tuner {__version__}"


def test_a_finished_study_run_again_shows_its_best_in_a_whole_bar_and_the_ui_link(
        workdir: Path, tracking_uri: str) -> None:
    space = write_space(workdir)
    name = "a-study-name-long-enough-to-need-room-in-the-bar"
    args = ["run", str(space), "--trials", "1", "--study", name, "--no-model", "--experiment",
            "cli-bar", "--threads", "1"]
    assert tuner(args, workdir, tracking_uri).returncode == 0
    again = tuner(args, workdir, tracking_uri)  # stderr is a pipe: not a terminal
    assert again.returncode == 0, again.stderr
    bar = [line for line in again.stderr.splitlines() if "ETA" in line]
    assert bar, again.stderr
    assert re.search(r"best 0\.\d+ pruned 0 failed 0", bar[-1]), bar[-1]  # not "best -"
    assert re.search(r"ETA \d+:\d\d:\d\d\s*$", bar[-1]) and "…" not in again.stderr, bar[-1]
    experiment = MlflowClient(tracking_uri).get_experiment_by_name("cli-bar")
    assert experiment is not None
    link = (f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}"
            "?workflowType=machine_learning")
    assert f"{link} (after `tuner ui`)" in again.stdout, again.stdout
