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
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd
from optuna.importance import BaseImportanceEvaluator, FanovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from tuner._errors import TunerError
from tuner._spec import parse_space
from tuner._study import ATTR_SPACE_TEXT

if TYPE_CHECKING:
    from tuner._compare import Comparison

VIEWS = ("optimization_history", "param_importances", "parallel_coordinate", "slice", "contour",
         "intermediate_values")
PAGE = "views.html"
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


class _Cached(BaseImportanceEvaluator):
    """fANOVA fits a forest; compute once and hand the result to both plotting backends."""

    def __init__(self, importances: dict[str, float]):
        self.importances = importances

    def evaluate(self, study: optuna.Study, params: list[str] | None = None, *,
                 target: Callable[[FrozenTrial], float] | None = None) -> dict[str, float]:
        return dict(self.importances)


def study_views(study: optuna.Study) -> dict[str, str | bytes]:
    """File name -> content: `NAME.png` per view that applies, and `views.html` with all of them.

    A view that does not apply (one trial, no intermediate values, fewer than two parameters)
    or fails is left out and named in `skipped.txt`; a study never fails because of its plots.
    """
    import optuna.visualization as plotly_views
    import optuna.visualization.matplotlib as mpl_views

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not trials:
        return {"skipped.txt": "no complete trial: nothing to plot\n"}
    _headless_matplotlib()
    target = _objective_name(study)
    importances = _importances(study) if len(trials) >= 2 else {}
    evaluator = _Cached(importances)
    top = list(importances)[:2]
    plans: dict[str, tuple[str, Callable[[Any], Any]] | str] = {}
    plans["optimization_history"] = ("Optimization history: each trial's value and the best so "
                                     "far", lambda m: m.plot_optimization_history(
                                         study, target_name=target))
    plans["param_importances"] = (
        ("Parameter importances (fANOVA on the complete trials)",
         lambda m: m.plot_param_importances(study, evaluator=evaluator, target_name=target))
        if importances else "needs two complete trials and a searched parameter")
    plans["parallel_coordinate"] = ("Parallel coordinates: each line is a trial",
                                    lambda m: m.plot_parallel_coordinate(
                                        study, target_name=target))
    plans["slice"] = ("Slice: the objective against each parameter",
                      lambda m: m.plot_slice(study, target_name=target))
    plans["contour"] = (
        (f"Contour of the two most important parameters ({top[0]}, {top[1]})",
         lambda m: m.plot_contour(study, params=top, target_name=target))
        if len(top) == 2 else "needs two parameters with an importance")
    reported = [t for t in study.get_trials(deepcopy=False)
                if t.intermediate_values and t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    plans["intermediate_values"] = (
        ("Intermediate values: the objective per epoch of every trial; pruned trials in red, "
         "ending where they were stopped", lambda m: _curves(m, reported, target))
        if reported else "no intermediate values: the study ran without a pruner")

    searched = len({name for t in trials for name in t.params})  # parallel coordinates' axes
    files: dict[str, str | bytes] = {}
    sections: list[tuple[str, Any]] = []
    skipped: list[str] = []
    with _quiet():
        for name, plan in plans.items():
            if isinstance(plan, str):
                skipped.append(f"{name}: {plan}")
                continue
            title, draw = plan
            try:
                files[f"{name}.png"] = _png(draw(mpl_views), width=(
                    max(8.0, 0.8 * (searched + 1)) if name == "parallel_coordinate" else 8.0))
                sections.append((title, draw(plotly_views)))
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
    if len(study.directions) > 1:  # no single objective to plot: the Pareto front instead
        from tuner._multi import front_files

        files = front_files(study)
    else:
        files = study_views(study)
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


def _png(axes: Any, width: float = 8.0) -> bytes:
    figure = np.ravel(axes)[0].figure  # Optuna returns an Axes or an array of them
    if figure.get_figwidth() < width:
        figure.set_size_inches(width, max(figure.get_figheight(), 5))
    return png(figure)


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

    figure = go.Figure()
    shown: set[str] = set()
    for t in trials:
        label, color = styles[t.state]
        steps = sorted(t.intermediate_values)
        figure.add_trace(go.Scatter(x=steps, y=[t.intermediate_values[s] for s in steps],
                                    mode="lines+markers", name=label, legendgroup=label,
                                    showlegend=label not in shown, line={"color": color},
                                    opacity=0.6, hovertext=f"trial {t.number} ({label})"))
        shown.add(label)
    figure.update_layout(xaxis_title="epoch", yaxis_title=target, height=450)
    return figure


def _importances(study: optuna.Study) -> dict[str, float]:
    try:
        return optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError):  # e.g. every searched parameter took one value
        return {}


def _objective_name(study: optuna.Study) -> str:
    text = study.user_attrs.get(ATTR_SPACE_TEXT)
    if text is None:
        return "Objective Value"
    try:
        return parse_space(text).objective.key
    except TunerError:
        return "Objective Value"


def _headless_matplotlib() -> None:
    # Without a display an interactive backend would fail; a notebook keeps its own backend.
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import matplotlib

    # Optuna's matplotlib views switch the global style; the caller's (a notebook's) comes back.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")
        optuna_level = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            yield
        finally:
            optuna.logging.set_verbosity(optuna_level)


# Comparison reports (`tuner compare`): best-so-far bands, the summary table, report.md.
SUMMARY_HEADERS = ("strategy", "best (mean ± std)", "test (mean ± std)", "reached target",
                   "trials to target", "time to target", "epochs", "pruned", "wall / study")


def comparison_files(comparison: Comparison) -> dict[str, str | bytes]:
    """The report folder of a comparison: CSVs, curves (PNG and one interactive page), report.md."""
    files: dict[str, str | bytes] = {}
    summary = pd.DataFrame([{"strategy": s, **v} for s, v in comparison.strategies.items()])
    files["summary.csv"] = summary.to_csv(index=False)
    files["studies.csv"] = comparison.studies.to_csv(index=False)
    files["trials.csv"] = comparison.trials.to_csv(index=False)
    sections = []
    if not comparison.trials.empty:
        _headless_matplotlib()
        for x, label, file in (("trial", "trial", "best_vs_trial"),
                               ("elapsed_s", "wall time (s): sum of trial durations", "best_vs_time")):
            bands = best_so_far_bands(comparison.trials, x)
            title = (f"Best {comparison.objective} so far: mean over repeats, band min-max"
                     + (f"; dashed: target {comparison.target:.4g}" if comparison.target else ""))
            files[f"{file}.png"] = _band_png(bands, comparison.target, title, label,
                                             comparison.objective)
            sections.append((title + f", against {label}",
                             _band_plotly(bands, comparison.target, label, comparison.objective)))
        files["curves.html"] = page(f"comparison {comparison.name}", sections)
    files["report.md"] = report_markdown(comparison, sorted(files))
    return files


def best_so_far_bands(trials: pd.DataFrame, x: str) -> dict[str, pd.DataFrame]:
    """Strategy -> (x, mean, low, high): the best value so far over repeats, against the trial
    count or against the study's elapsed time (on 200 points, each repeat held at its last best);
    NaN until every repeat has a complete trial."""
    out = {}
    for strategy, frame in trials.groupby("strategy", sort=False):
        if x == "trial":
            wide = frame.pivot(index="trial", columns="repeat", values="best_so_far").ffill()
        else:
            axis = np.linspace(0.0, float(frame.elapsed_s.max()), 200)
            columns = {}
            for repeat, rows in frame.groupby("repeat"):
                at = np.searchsorted(rows.elapsed_s.to_numpy(), axis, side="right") - 1
                values = rows.best_so_far.to_numpy(dtype=float)
                columns[repeat] = np.where(at >= 0, values[np.clip(at, 0, None)], np.nan)
            wide = pd.DataFrame(columns, index=axis)
        # Only where every repeat has a best: a mean over a growing set of repeats would jump.
        out[str(strategy)] = pd.DataFrame({"x": wide.index.to_numpy(dtype=float),
                                           "mean": wide.mean(axis=1, skipna=False).to_numpy(),
                                           "low": wide.min(axis=1, skipna=False).to_numpy(),
                                           "high": wide.max(axis=1, skipna=False).to_numpy()})
    return out


def _band_png(bands: dict[str, pd.DataFrame], target: float | None, title: str, xlabel: str,
              ylabel: str) -> bytes:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    for color, (strategy, band) in zip(COLORS * 3, bands.items(), strict=False):
        axes.plot(band.x, band["mean"], color=color, label=strategy, drawstyle="steps-post")
        axes.fill_between(band.x, band.low, band.high, color=color, alpha=0.2, step="post")
    if target is not None:
        axes.axhline(target, color="grey", linestyle="--", linewidth=1)
    axes.set(title=title, xlabel=xlabel, ylabel=f"best {ylabel} so far")
    axes.title.set_fontsize(9)
    axes.legend()
    axes.grid(alpha=0.3)
    return png(figure)


def _band_plotly(bands: dict[str, pd.DataFrame], target: float | None, xlabel: str,
                 ylabel: str) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for color, (strategy, band) in zip(COLORS * 3, bands.items(), strict=False):
        shape = {"shape": "hv"}
        figure.add_trace(go.Scatter(x=band.x, y=band.high, line={"width": 0, **shape},
                                    legendgroup=strategy, showlegend=False, hoverinfo="skip"))
        figure.add_trace(go.Scatter(x=band.x, y=band.low, line={"width": 0, **shape},
                                    fill="tonexty", fillcolor=_alpha(color), legendgroup=strategy,
                                    showlegend=False, hoverinfo="skip"))
        figure.add_trace(go.Scatter(x=band.x, y=band["mean"], name=strategy, legendgroup=strategy,
                                    line={"color": color, **shape}))
    if target is not None:
        figure.add_hline(y=target, line_dash="dash", line_color="grey")
    figure.update_layout(xaxis_title=xlabel, yaxis_title=f"best {ylabel} so far", height=450)
    return figure


def _alpha(color: str) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},0.2)"


def summary_rows(comparison: Comparison) -> list[tuple[str, ...]]:
    """The summary table's rows as text (SUMMARY_HEADERS), for the terminal and report.md."""
    rows: list[tuple[str, ...]] = []
    for strategy, s in comparison.strategies.items():
        reached = f"{s['reached']}/{s['repeats']}"
        rows.append((strategy, _pm(s["best_mean"], s["best_std"]), _pm(s["test_mean"], s["test_std"]),
                     reached, _num(s["trials_to_target"], ".1f"),
                     _num(s["time_to_target_s"], ".1f", " s"), _num(s["epochs"], ".0f"),
                     _num(None if s["pruned_share"] is None else 100 * s["pruned_share"], ".0f", "%"),
                     _num(s["wall_s"], ".1f", " s")))
    return rows


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def _num(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def report_markdown(comparison: Comparison, files: list[str]) -> str:
    settings = comparison.settings
    lines = [f"# Comparison {comparison.name}", "",
             f"Space `{settings['space']}` ({settings['data']}), objective `{comparison.objective}` "
             f"({comparison.direction}). Strategies {', '.join(settings['strategies'])}; "
             f"{settings['trials']} trials per study, {settings['repeats']} repeats (seed "
             f"{settings['seed']}), pruner {settings['pruner']}, at most {settings['max_epochs']} "
             "epochs per trial; the same data split for every study.", ""]
    if comparison.grid is not None:
        lines += [comparison.grid.describe().capitalize() + ".", ""]
    target = "-" if comparison.target is None else f"{comparison.target:.4g}"
    lines += [f"Target: {comparison.objective} {target}. Test: `{comparison.test_metric}` of each "
              "study's best trial, on the held-out split. Time: the sum of trial durations.", "",
              "| " + " | ".join(SUMMARY_HEADERS) + " |",
              "|" + "---|" * len(SUMMARY_HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(comparison)]
    lines.append("")
    for name, caption in (("best_vs_trial.png", "Best so far against trials"),
                          ("best_vs_time.png", "Best so far against wall time")):
        if name in files:
            lines += [f"![{caption}]({name})", ""]
    links = [f"[{f}]({f})" for f in ("curves.html", "summary.csv", "studies.csv", "trials.csv")
             if f in files]
    lines += [f"Files: {', '.join(links)}.", ""]
    if comparison.interrupted:
        lines += ["**Interrupted**: run the same command again to finish the comparison.", ""]
    return "\n".join(lines)
