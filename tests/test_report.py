"""Per-study views (Optuna's plots as PNG and one HTML page) and the comparison curves."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import TINY_SPACE, write_space
from tests.helpers import load_study
from tuner import RunOptions, load_space, run_study
from tuner.analysis import VIEWS, best_so_far_bands, study_views
from tuner.cli import main

PRUNED_SPACE = TINY_SPACE.replace("pruner: none", "pruner: {name: median, startup_trials: 1}") \
    .replace("max_epochs: 3", "max_epochs: 2")
PNG = b"\x89PNG"


def test_a_study_parent_run_gets_the_interactive_views_and_report_adds_the_pngs(
        workdir: Path, tracking_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    space = load_space(write_space(workdir, PRUNED_SPACE))
    result = run_study(space, RunOptions(strategy="tpe", trials=4, storage=str(workdir / "s.journal"),
                                         tracking_uri=tracking_uri, experiment="views",
                                         log_model=False, progress=False, threads=1, views=True))
    client = MlflowClient(tracking_uri)
    logged = {f.path for f in client.list_artifacts(result.mlflow_parent_run_id, "views")}
    # The study's critical path draws no PNG (seconds of matplotlib): `tuner report` does.
    assert logged == {"views/views.html"}
    html = Path(client.download_artifacts(result.mlflow_parent_run_id, "views/views.html",
                                          str(workdir))).read_text()
    assert html.count("class=\"plotly-graph-div\"") == len(VIEWS)

    code = main(["report", result.study, "--storage", str(workdir / "s.journal"), "--out", "rep"])
    assert code == 0
    written = {p.name: p.read_bytes() for p in (workdir / "rep").iterdir()}
    assert set(written) == {f"{v}.png" for v in VIEWS} | {"views.html"}
    for view in VIEWS:
        assert written[f"{view}.png"][:4] == PNG
    page = written["views.html"].decode()
    assert page.count("class=\"plotly-graph-div\"") == len(VIEWS)
    assert "Contour of the two most important parameters" in page
    assert "<script src=" not in page  # plotly.js is inside: the page works offline
    assert "rep" in capsys.readouterr().out


def test_views_that_do_not_apply_are_named_with_the_reason(workdir: Path) -> None:
    # No pruner: no intermediate values; one complete trial: no importances, no contour.
    space = load_space(write_space(workdir))
    result = run_study(space, RunOptions(trials=1, storage=str(workdir / "s.journal"),
                                         tracking=False, progress=False, threads=1, views=False))
    style = dict(matplotlib.rcParams)
    files = study_views(load_study(result.study, workdir / "s.journal"))
    assert dict(matplotlib.rcParams) == style  # Optuna's ggplot style did not leak out
    assert set(files) == {"optimization_history.png", "parallel_coordinate.png", "slice.png",
                          "views.html", "skipped.txt"}
    skipped = str(files["skipped.txt"])
    assert "intermediate_values: no intermediate values" in skipped
    assert "param_importances: needs two complete trials" in skipped
    assert "contour: needs two parameters" in skipped


def test_report_of_an_unknown_study_exits_2_and_writes_nothing(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", "nope", "--storage", str(workdir / "s.journal"), "--out", "rep"])
    assert code == 2 and "no study 'nope'" in capsys.readouterr().err
    assert not (workdir / "rep").exists()


def test_best_so_far_bands_over_repeats() -> None:
    trials = pd.DataFrame({
        "strategy": ["tpe"] * 5, "repeat": [0, 0, 0, 1, 1], "trial": [1, 2, 3, 1, 2],
        "best_so_far": [0.5, 0.5, 0.9, math.nan, 0.7], "elapsed_s": [1.0, 2.0, 3.0, 2.0, 4.0]})
    band = best_so_far_bands(trials, "trial")["tpe"]
    assert list(band.x) == [1, 2, 3]
    assert math.isnan(band["mean"][0])  # repeat 1 has no complete trial yet
    assert list(band["mean"][1:]) == [0.6, 0.8]  # repeat 1 keeps its best after its last trial
    assert list(band.low[1:]) == [0.5, 0.7] and list(band.high[1:]) == [0.7, 0.9]
    timed = best_so_far_bands(trials, "elapsed_s")["tpe"].set_index("x")
    assert timed.index[0] == 0.0 and timed.index[-1] == 4.0 and len(timed) == 200
    assert math.isnan(timed["mean"].iloc[0])  # nothing finished at time 0
    assert math.isnan(timed[timed.index >= 3.0]["mean"].iloc[0])  # repeat 1 not done yet
    assert timed["mean"].iloc[-1] == pytest.approx(0.8)
    assert timed["low"].iloc[-1] == 0.7 and timed["high"].iloc[-1] == 0.9
