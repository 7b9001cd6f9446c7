"""Optuna's views of a study (history, importances, ...) as PNG files and one interactive page.

PNGs come from Optuna's matplotlib backend; the interactive page holds every plotly figure with
plotly.js embedded once, so it opens offline and inside the MLflow UI's artifact viewer (which
shows HTML in a sandboxed frame that cannot load a script from a relative path). One page per
study rather than one per view keeps a 30-study comparison from storing plotly.js 180 times.
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from tuner.analysis._importances import KnownImportances, best_trials, param_importances
from tuner.errors import TunerError
from tuner.search import (
    ATTR_SPACE_TEXT,
    front_table,
    objectives_of,
    pareto_front,
    plotly_optuna_views,
)
from tuner.space import parse_space

VIEWS = ("optimization_history", "param_importances", "parallel_coordinate", "slice", "contour",
         "intermediate_values")
PAGE = "views.html"
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def study_views(study: optuna.Study, png: bool = True) -> dict[str, str | bytes]:
    """File name -> content: `NAME.png` per view that applies (unless `png` is False: drawing
    them takes seconds), and `views.html` with all of them.

    A view that does not apply (one trial, no intermediate values, fewer than two parameters)
    or fails is left out and named in `skipped.txt`; a study never fails because of its plots.
    """
    plotly_views = plotly_optuna_views()  # no matplotlib: it loads for PNGs only

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        return {"skipped.txt": "no complete trial: nothing to plot\n"}
    if png:  # matplotlib only for PNGs (half a second of imports at the end of a study)
        _headless_matplotlib()
        import optuna.visualization.matplotlib as mpl_views

        from tuner.analysis._static import contour_figure, parallel_figure, slice_figure
    target = _objective_name(study)
    importances = param_importances(study)
    evaluator = KnownImportances(importances)
    # Parameters every complete trial has come first (a conditional one, e.g. SGD's momentum,
    # lacks a value on many lines), and only they can make a contour of every trial.
    everywhere = set.intersection(*(set(t.params) for t in trials))
    order = sorted(importances, key=lambda name: name not in everywhere)  # stable
    top = [name for name in order if name in everywhere][:2]
    # name -> (title, PNG figure, interactive figure), or why the view does not apply. The slice,
    # contour and parallel coordinates are tuner's own PNGs (see `_static`); the page keeps
    # Optuna's plotly figures, which are interactive.
    Plan = tuple[str, Callable[[], Any], Callable[[], Any]]
    plans: dict[str, Plan | str] = {}
    plans["optimization_history"] = (
        "Optimization history: each trial's value and the best so far",
        lambda: mpl_views.plot_optimization_history(study, target_name=target),
        lambda: plotly_views.plot_optimization_history(study, target_name=target))
    plans["param_importances"] = (
        (f"Parameter importances (PED-ANOVA): what it took to be among the best "
         f"{best_trials(len(trials))} of {len(trials)} complete trials",
         lambda: mpl_views.plot_param_importances(study, evaluator=evaluator, target_name=target),
         lambda: _importance_bars(trials, importances, target))
        if importances else "needs two complete trials of different values and a searched "
                            "parameter")
    plans["parallel_coordinate"] = (
        "Parallel coordinates: each line is a trial",
        lambda: parallel_figure(study, target, order),
        lambda: plotly_views.plot_parallel_coordinate(study, target_name=target))
    plans["slice"] = ("Slice: the objective against each parameter",
                      lambda: slice_figure(study, target),
                      lambda: plotly_views.plot_slice(study, target_name=target))
    plans["contour"] = (
        (f"Contour of the two most important parameters that every trial has ({top[0]}, "
         f"{top[1]})",
         lambda: contour_figure(study, top, target),
         lambda: plotly_views.plot_contour(study, params=top, target_name=target))
        if len(top) == 2 else "needs two parameters with an importance that every trial has")
    reported = [t for t in study.get_trials(deepcopy=False)
                if t.intermediate_values and t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    plans["intermediate_values"] = (
        ("Intermediate values: the objective per epoch of every trial; pruned trials in red, "
         "ending where they were stopped", lambda: _curves(mpl_views, reported, target),
         lambda: _curves(plotly_views, reported, target))
        if reported else "no intermediate values: the study ran without a pruner")

    files: dict[str, str | bytes] = {}
    sections: list[tuple[str, Any]] = []
    skipped: list[str] = []
    with _quiet(png):
        for name, plan in plans.items():
            if isinstance(plan, str):
                skipped.append(f"{name}: {plan}")
                continue
            title, draw_png, draw_html = plan
            try:
                if png:
                    files[f"{name}.png"] = _png(draw_png())
                sections.append((title, draw_html()))
            except Exception as exc:  # a plot is a by-product; report it and go on
                files.pop(f"{name}.png", None)
                skipped.append(f"{name}: {type(exc).__name__}: {exc}")
    files[PAGE] = page(f"study {study.study_name}", sections)
    if skipped:
        files["skipped.txt"] = "\n".join(skipped) + "\n"
    return files


def write_study_views(study: optuna.Study, folder: Path) -> list[Path]:
    """`tuner report`: the same files that a study's parent run gets under `views/`."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise TunerError(f"study {study.study_name!r} has no complete trial yet: nothing to plot")
    files = front_views(study) if len(study.directions) > 1 else study_views(study)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files.items():
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def front_views(study: optuna.Study) -> dict[str, str | bytes]:
    """A multi-objective study's views: front.csv, pareto.html (plotly, interactive) and
    pareto.png, on the first two objectives."""
    from tuner.analysis._plots import front_png

    rows = front_table(study)
    names = [k for k, _ in objectives_of(study)]
    frame = pd.DataFrame([{**r, "config": json.dumps(r["config"], default=str)} for r in rows])
    files: dict[str, str | bytes] = {"front.csv": frame.to_csv(index=False)}
    with _quiet():
        figure = plotly_optuna_views().plot_pareto_front(study, target_names=names)
    files["pareto.html"] = page(f"Pareto front of {study.study_name}", [("Pareto front", figure)])
    files["pareto.png"] = front_png(study, names, {m.number for m in pareto_front(study)})
    return files


def page(title: str, sections: list[tuple[str, Any]]) -> str:
    """One self-contained HTML page of plotly figures (plotly.js inlined once)."""
    from plotly.offline import get_plotlyjs

    parts = [f"<h2>{html.escape(heading)}</h2>"
             + figure.to_html(full_html=False, include_plotlyjs=False) for heading, figure in sections]
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><script>{get_plotlyjs()}</script></head>"
            f"<body style='font-family:sans-serif'><h1>{html.escape(title)}</h1>"
            + "".join(parts) + "</body></html>")


def png(figure: Any) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _png(drawn: Any, width: float = 8.0) -> bytes:
    """A Figure (tuner's views) or what Optuna returns (an Axes or an array of them) as PNG."""
    from matplotlib.figure import Figure

    figure = drawn if isinstance(drawn, Figure) else np.ravel(drawn)[0].figure
    if figure.get_figwidth() < width:
        figure.set_size_inches(width, max(figure.get_figheight(), 5))
    return png(figure)


def _importance_bars(trials: list[FrozenTrial], importances: dict[str, float],
                     target: str) -> Any:
    """Optuna's plotly chart of importances, drawn as Optuna draws it: Optuna's own reads a
    copy of every trial once per parameter for its hover text (a second at 1000 trials)."""
    import plotly.graph_objects as go

    kinds: dict[str, str] = {}
    for trial in trials:
        for name, distribution in trial.distributions.items():
            kinds.setdefault(name, type(distribution).__name__)
    names = list(importances)[::-1]  # the most important on top
    values = [importances[name] for name in names]
    return go.Figure(
        [go.Bar(x=values, y=names, name=target, orientation="h", textposition="outside",
                text=[f"{v:.2f}" if v >= 0.01 else "<0.01" for v in values], cliponaxis=False,
                hovertemplate=[f"{name} ({kinds.get(name, '')}): {value}<extra></extra>"
                               for name, value in zip(names, values, strict=True)])],
        go.Layout(title="Hyperparameter Importances",
                  xaxis={"title": "Hyperparameter Importance"},
                  yaxis={"title": "Hyperparameter"}))


def _curves(backend: Any, trials: list[FrozenTrial], target: str) -> Any:
    """Learning curves coloured by outcome (Optuna's own plot colours each trial apart, which
    hides the pruned ones among dozens of lines)."""
    styles = {TrialState.COMPLETE: ("complete", COLORS[0]), TrialState.PRUNED: ("pruned", COLORS[3])}
    if backend.__name__.endswith("matplotlib"):
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(8, 5))
        for t in trials:
            label, color = styles[t.state]
            steps = sorted(t.intermediate_values)
            axes.plot(steps, [t.intermediate_values[s] for s in steps], color=color, alpha=0.6,
                      marker="x" if t.state == TrialState.PRUNED else None, markevery=[-1],
                      label=label)
        handles = {str(h.get_label()): h for h in axes.get_legend_handles_labels()[0]}
        axes.legend(list(handles.values()), list(handles.keys()))
        axes.set(title="Intermediate values", xlabel="epoch", ylabel=target)
        return axes
    import plotly.graph_objects as go

    # One trace per outcome, trials apart by gaps (None): a trace per trial made a thousand-trial
    # page spend a third of a second on plotly's checks of a thousand traces. The complete
    # trials are drawn last, on top.
    figure = go.Figure()
    for state in (TrialState.PRUNED, TrialState.COMPLETE):
        label, color = styles[state]
        x: list[int | None] = []
        y: list[float | None] = []
        hover: list[str | None] = []
        for t in trials:
            if t.state != state:
                continue
            steps = sorted(t.intermediate_values)
            x += [*steps, None]
            y += [*(t.intermediate_values[s] for s in steps), None]
            hover += [f"trial {t.number} ({label})"] * len(steps) + [None]
        if x:
            figure.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=label,
                                        line={"color": color}, opacity=0.6, hovertext=hover))
    figure.update_layout(xaxis_title="epoch", yaxis_title=target, height=450,
                         legend={"traceorder": "reversed"})
    return figure


def _objective_name(study: optuna.Study) -> str:
    text = study.user_attrs.get(ATTR_SPACE_TEXT)
    if text is None:
        return "Objective Value"
    try:
        return parse_space(text).objective.key
    except TunerError:
        return "Objective Value"


def _caller_style(png: bool) -> contextlib.AbstractContextManager[Any]:
    """Optuna's matplotlib views switch the global style; the caller's (a notebook's) comes
    back. Without PNGs, matplotlib is not loaded at all."""
    if not png:
        return contextlib.nullcontext()
    import matplotlib

    return matplotlib.rc_context()


def _headless_matplotlib() -> None:
    # Without a display an interactive backend would fail; a notebook keeps its own backend.
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


@contextlib.contextmanager
def _quiet(png: bool = False) -> Iterator[None]:
    with warnings.catch_warnings(), _caller_style(png):
        warnings.simplefilter("ignore")
        optuna_level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            yield
        finally:
            optuna.logging.set_verbosity(optuna_level)
