"""The Python API face: every public name resolves, the docstring examples run, stored studies
and MLflow runs come back as DataFrames."""

from __future__ import annotations

import doctest
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tuner
import tuner.api
from tests.conftest import write_space
from tuner.cli import main


def test_every_public_name_resolves_and_the_face_stays_light() -> None:
    for name in tuner.__all__:
        assert getattr(tuner, name) is not None, name
    assert (Path(tuner.__file__).parent / "py.typed").exists()


@pytest.mark.parametrize("module", [tuner, tuner.api])
def test_docstring_examples_run(module: object, workdir: Path) -> None:
    (workdir / "search_spaces").symlink_to(Path(tuner.__file__).parents[1] / "search_spaces")
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert attempted > 0 and failed == 0


def test_stored_studies_and_runs_as_dataframes(workdir: Path, tracking_uri: str) -> None:
    space = tuner.load_space(write_space(workdir))
    journal = str(workdir / "api.journal")
    result = tuner.run_study(space, tuner.RunOptions(
        trials=2, storage=journal, tracking_uri=tracking_uri, experiment="api-frames",
        log_model=False, progress=False, threads=1, views=False))
    frame = tuner.trials(result.study, journal)
    assert len(frame) == 2 and {"number", "value", "state"} <= set(frame.columns)
    assert frame["value"].max() == result.best_value
    runs = tuner.runs("api-frames", tracking_uri)
    assert len(runs) == 3  # the parent run and one per trial
    assert sorted(runs["tags.tuner.role"]) == ["study", "trial", "trial"]
    assert tuner.open_study(result.study, journal).best_trial.number == result.best_trial
    # Written from a thread here (MLflow is loaded): the study recorded its best trial's run.
    best_run = runs.loc[runs["tags.trial_number"] == str(result.best_trial), "run_id"]
    assert tuner.open_study(result.study, journal).user_attrs["tuner.best_run"] == {
        "trial": result.best_trial, "run": best_run.item(),
        "parent": result.mlflow_parent_run_id}
    with pytest.raises(tuner.TunerError, match="no study 'missing'"):
        tuner.open_study("missing", journal)
    with pytest.raises(tuner.TunerError, match="no MLflow experiment"):
        tuner.runs("missing-experiment", tracking_uri)


def test_compare_strategies_with_a_custom_trainer(workdir: Path, tracking_uri: str) -> None:
    space = tuner.parse_space("""\
name: toy_compare
model: custom
objective: {metric: score, direction: maximize}
study: {strategy: random, trials: 4, seed: 0, pruner: none, grid_points: 2}
params:
  x: {type: float, low: 0.0, high: 1.0}
""")

    def trainer(params: dict, reporter: tuner.Reporter) -> float:
        reporter.report(1, {"val_score": params["x"]})
        return float(params["x"])

    comparison = tuner.compare(space, tuner.CompareOptions(
        strategies=("grid", "random", "tpe"), trials=3, repeats=1, tracking_uri=tracking_uri,
        storage=str(workdir / "cmp.journal"), out=str(workdir / "report"), views=False,
        log_model=False, threads=1), objective=trainer)
    assert set(comparison.strategies) == {"grid", "random", "tpe"}
    assert len(comparison.studies) == 3 and (workdir / "report" / "report.md").exists()
    trials = comparison.trials
    assert len(trials) >= 6 and trials["value"].between(0.0, 1.0).all()
    # 3 trials are within TPE's random start-up: random and tpe ran the same parameters.
    assert comparison.notes and "identical parameters" in comparison.notes[0]
    assert "**Note**: 3 trials per study" in (workdir / "report" / "report.md").read_text()
    assert {s["rank"] for s in comparison.strategies.values()} <= {1, 2, 3}
    with pytest.raises(tuner.OptionError) as clash:  # the same name, other settings
        tuner.compare(space, tuner.CompareOptions(
            strategies=("random",), trials=4, repeats=1, tracking_uri=tracking_uri,
            storage=str(workdir / "cmp.journal"), out=str(workdir / "report"), views=False,
            log_model=False, threads=1), objective=trainer)
    message = str(clash.value)
    assert message.startswith("name: comparison 'toy_compare-compare'") and "trials: 3 -> 4" in message
    assert message.endswith("use the same settings to resume it, or another name=")
    assert "--" not in message


def test_the_api_keeps_optuna_quiet_and_leaves_the_callers_settings(workdir: Path) -> None:
    """As the CLI: no "[I ...] A new study created" lines, no ExperimentalWarning (TPE's
    `group`); the caller's Optuna verbosity and warning filters are as they were."""
    write_space(workdir)
    script = textwrap.dedent("""\
        import warnings
        import optuna
        import tuner
        filters = list(warnings.filters)
        tuner.run_study(tuner.load_space("tiny.yaml"), tuner.RunOptions(
            strategy="tpe", trials=2, tracking=False, progress=False, views=False, threads=1))
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
        assert list(warnings.filters) == filters
        print("done")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=workdir, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    assert "A new study created" not in done.stderr and "[I " not in done.stderr, done.stderr
    assert "ExperimentalWarning" not in done.stderr, done.stderr


def test_api_errors_name_the_api_arguments_and_the_cli_its_flags(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tuner.load_space(write_space(workdir))
    journal = str(workdir / "api.journal")
    result = tuner.run_study(space, tuner.RunOptions(trials=1, storage=journal, tracking=False,
                                                     progress=False, views=False, threads=1))
    tuner.export(result.study, "best.yaml", journal)
    with pytest.raises(tuner.OptionError) as refused:
        tuner.export(result.study, "best.yaml", journal)  # the README's snippet, run twice
    assert str(refused.value) == ("output: best.yaml exists; choose another file, or pass "
                                  "force=True to overwrite it")
    assert tuner.export(result.study, "best.yaml", journal, force=True).exists()
    assert main(["export", result.study, "--storage", journal, "-o", "best.yaml"]) == 2
    assert capsys.readouterr().err.strip() == ("tuner: error: --output: best.yaml exists; choose "
                                               "another file, or pass --force to overwrite it")

