"""Per-study views (Optuna's plots as PNG and one HTML page) and the comparison curves."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib
import optuna
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from mlflow.tracking import MlflowClient

from tests.conftest import TINY_SPACE, write_space
from tests.helpers import load_study
from tuner import RunOptions, load_space, run_study
from tuner.analysis import VIEWS, best_so_far_bands, study_views
from tuner.analysis._static import contour_figure, parallel_figure, slice_figure
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


_PAGE_ONLY = """
import sys

import optuna

from tuner.analysis import VIEWS, study_views

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(direction="maximize")
def objective(trial):
    for epoch in range(3):
        trial.report(trial.suggest_float("x", 0, 1) * epoch, epoch)
    return trial.suggest_float("x", 0, 1) + trial.suggest_int("y", 1, 4)
study.optimize(objective, n_trials=6)
files = study_views(study, png=False)
page = files["views.html"]
assert page.count('class="plotly-graph-div"') == len(VIEWS), files.get("skipped.txt")
print(sorted(m for m in ("matplotlib", "matplotlib.pyplot") if m in sys.modules))
"""


def test_the_views_page_alone_loads_no_matplotlib() -> None:
    """The page a study logs at its end is plotly only: matplotlib (a third of a second of
    imports on every study's path) loads for PNGs."""
    import subprocess
    import sys

    from tests.conftest import REPO

    done = subprocess.run([sys.executable, "-c", _PAGE_ONLY], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


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
    trials["best_by_time"] = trials.best_so_far  # trials ended in trial order
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



def test_a_strategy_without_a_complete_trial_has_an_empty_band_that_draws() -> None:
    """An interrupted comparison can hold studies whose only trials were interrupted (with
    `--jobs`, several at once): no best so far anywhere (it broke the report's PNG once)."""
    from tuner.analysis._report import _band_png

    trials = pd.DataFrame({"strategy": ["tpe", "gp"], "repeat": [0, 0], "trial": [1, 1],
                           "best_so_far": [None, None], "elapsed_s": [1.0, 1.0],
                           "best_by_time": [None, None]})  # no value anywhere: objects
    for x in ("trial", "elapsed_s"):
        bands = best_so_far_bands(trials, x)
        assert bands["gp"]["mean"].isna().all() and bands["gp"]["mean"].dtype == float
        assert _band_png(bands, 0.5, "title", x, "accuracy").startswith(b"\x89PNG")
VIEW_SPACE = """\
name: views
data: {source: digits, val_fraction: 0.2, test_fraction: 0.2, seed: 0}
objective: {metric: accuracy}
training: {max_epochs: 1, early_stopping: false}
study: {strategy: random, trials: 8, pruner: none}
params:
  n_layers: {type: int, low: 1, high: 2}
  units: {type: int, low: 8, high: 64, log: true, per_layer: n_layers}
  optimizer: {type: categorical, choices: [adam, sgd]}
  lr: {type: float, low: 1e-4, high: 1e-1, log: true}
  momentum: {type: float, low: 0.5, high: 0.9, when: {optimizer: sgd}}
  dropout: {type: float, low: 0.0, high: 0.4}
  weight_decay: {type: float, low: 1e-6, high: 1e-3, log: true}
  activation: {type: categorical, choices: [relu, tanh, gelu]}
  batch_size: {type: categorical, choices: [32, 64, 128]}
"""


def test_static_views_show_categories_log_axes_and_readable_sizes(workdir: Path) -> None:
    from PIL import Image

    space = load_space(write_space(workdir, VIEW_SPACE, "views.yaml"))
    result = run_study(space, RunOptions(storage=str(workdir / "s.journal"), tracking=False,
                                         progress=False, threads=1, views=False))
    study = load_study(result.study, workdir / "s.journal")
    # A categorical batch_size of 32, 64, 128 is three categories, not a continuous axis, and no
    # surface is drawn across them; lr is on a log axis.
    (axes, *_) = contour_figure(study, ["batch_size", "lr"], "val_accuracy").axes
    assert [t.get_text() for t in axes.get_xticklabels()] == ["32", "64", "128"]
    assert axes.get_yscale() == "log" and not axes.collections[:-1]  # the points only
    (axes, *_) = contour_figure(study, ["lr", "dropout"], "val_accuracy").axes
    assert axes.get_xscale() == "log" and len(axes.collections) >= 2  # a surface, then points
    panels = {a.get_title(): a for a in slice_figure(study, "val_accuracy").axes if a.get_title()}
    assert panels["lr"].get_xscale() == "log" and panels["weight_decay"].get_xscale() == "log"
    assert [t.get_text() for t in panels["batch_size"].get_xticklabels()] == ["32", "64", "128"]
    # Parallel coordinates: no "None" for absent conditional parameters, no labels on top of
    # each other (checked on the drawn figure).
    figure = parallel_figure(study, "val_accuracy", ["lr"])
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    (axes, *_) = figure.axes
    labels = [t for t in axes.texts + axes.get_xticklabels() if t.get_text()]
    assert "None" not in {t.get_text() for t in labels}
    assert {"adam", "sgd", "32", "128", "val_accuracy", "lr (log)"} <= \
        {t.get_text() for t in labels}
    renderer = canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for j, b in enumerate(boxes[i + 1:], i + 1):
            assert not a.overlaps(b), (labels[i].get_text(), labels[j].get_text())
    # Readable sizes: the slice is a grid of panels, not a 2405 x 437 strip.
    files = study_views(study)
    for name in ("slice.png", "parallel_coordinate.png", "contour.png"):
        with Image.open(io.BytesIO(bytes(files[name]))) as image:
            width, height = image.size
        assert width <= 1800 and height >= 350 and width / height < 3.5, (name, image.size)


def test_the_curves_are_one_line_per_trial_in_one_trace_per_outcome() -> None:
    """The page's learning curves: every trial's intermediate values, lines apart by a gap, in
    one trace for the complete trials and one for the pruned (not one trace per trial, which
    cost a thousand-trial page a third of a second)."""
    from tuner.analysis._views import _curves
    from tuner.search import plotly_optuna_views

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        for epoch in range(1 + trial.number % 3):
            trial.report(x * (epoch + 1), epoch)
        if trial.number % 2:
            raise optuna.TrialPruned
        return x

    study.optimize(objective, n_trials=6)
    trials = study.get_trials(deepcopy=False)
    figure = _curves(plotly_optuna_views(), trials, "accuracy").to_dict()
    traces = {trace["name"]: trace for trace in figure["data"]}
    assert set(traces) == {"complete", "pruned"}
    for state, name in ((optuna.trial.TrialState.COMPLETE, "complete"),
                        (optuna.trial.TrialState.PRUNED, "pruned")):
        expected_x: list[int | None] = []
        expected_y: list[float | None] = []
        for t in (t for t in trials if t.state == state):
            expected_x += [*sorted(t.intermediate_values), None]
            expected_y += [*(t.intermediate_values[s] for s in sorted(t.intermediate_values)),
                           None]
        assert list(traces[name]["x"]) == expected_x
        assert list(traces[name]["y"]) == expected_y
        named = [h for h in traces[name]["hovertext"] if h is not None]
        assert named and all(h.endswith(f"({name})") for h in named)
