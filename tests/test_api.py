"""The Python API face: every public name resolves, the docstring examples run, stored studies
and MLflow runs come back as DataFrames."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import tuner
import tuner.api
from tests.conftest import write_space


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
