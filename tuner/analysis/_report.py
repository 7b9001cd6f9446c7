"""A comparison's report: summary.csv, studies.csv, trials.csv, best-so-far curves (PNG and one
interactive page) and report.md, which embeds them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tuner.analysis._comparison import Comparison
from tuner.analysis._plots import png_bytes
from tuner.analysis._views import COLORS, page

# Ranked (see `ranked`): reach of the target and the trials it took, then the best value; time
# comes with its spread, since it is the noisiest column.
SUMMARY_HEADERS = ("rank", "strategy", "reached target", "trials to target", "best (mean ± std)",
                   "test (mean ± std)", "time to target (mean ± std)", "epochs", "pruned",
                   "wall / study")
# Lines that lie on top of each other (strategies that ran the same trials) stay visible: the
# first is drawn widest, each later one narrower, dashed differently and above it.
LINE_STYLES = ("solid", "dashed", "dotted", "dashdot")
PLOTLY_DASHES = ("solid", "dash", "dot", "dashdot")


def line_width(index: int) -> float:
    return max(1.2, 4.0 - 0.9 * index)


def comparison_files(comparison: Comparison) -> dict[str, str | bytes]:
    """The report folder of a comparison: CSVs, curves (PNG and one interactive page), report.md."""
    files: dict[str, str | bytes] = {}
    summary = pd.DataFrame([{"strategy": s, **v} for s, v in comparison.strategies.items()])
    files["summary.csv"] = summary.to_csv(index=False)
    files["studies.csv"] = comparison.studies.to_csv(index=False)
    files["trials.csv"] = comparison.trials.to_csv(index=False)
    sections = []
    if not comparison.trials.empty:
        for x, label, file in (("trial", "trial", "best_vs_trial"),
                               ("elapsed_s", "time with trials running (s)", "best_vs_time")):
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
    count or against the study's time with trials running (on 200 points, each repeat held at
    its last best; trials in the order they ended); NaN until every repeat has a complete
    trial."""
    out = {}
    for strategy, frame in trials.groupby("strategy", sort=False):
        if x == "trial":
            # As floats: a strategy with no complete trial yet (interrupted) has only None.
            wide = frame.pivot(index="trial", columns="repeat",
                               values="best_so_far").astype(float).ffill()
        else:
            axis = np.linspace(0.0, float(frame.elapsed_s.max()), 200)
            columns = {}
            for repeat, rows in frame.groupby("repeat"):
                rows = rows.sort_values("elapsed_s", kind="stable")
                at = np.searchsorted(rows.elapsed_s.to_numpy(), axis, side="right") - 1
                values = rows.best_by_time.to_numpy(dtype=float)
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
    figure = Figure(figsize=(8, 5))
    axes = figure.subplots()
    for i, (color, (strategy, band)) in enumerate(zip(COLORS * 3, bands.items(), strict=False)):
        axes.plot(band.x, band["mean"], color=color, label=strategy, drawstyle="steps-post",
                  linewidth=line_width(i), linestyle=LINE_STYLES[i % len(LINE_STYLES)],
                  zorder=3 + i)
        axes.fill_between(band.x, band.low, band.high, color=color, alpha=0.2, step="post")
    if target is not None:
        axes.axhline(target, color="grey", linestyle="--", linewidth=1)
    axes.set(title=title, xlabel=xlabel, ylabel=f"best {ylabel} so far")
    axes.title.set_fontsize(9)
    axes.legend()
    axes.grid(alpha=0.3)
    return png_bytes(figure)


def _band_plotly(bands: dict[str, pd.DataFrame], target: float | None, xlabel: str,
                 ylabel: str) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for i, (color, (strategy, band)) in enumerate(zip(COLORS * 3, bands.items(), strict=False)):
        shape = {"shape": "hv"}
        figure.add_trace(go.Scatter(x=band.x, y=band.high, mode="lines", line={"width": 0, **shape},
                                    legendgroup=strategy, showlegend=False, hoverinfo="skip"))
        figure.add_trace(go.Scatter(x=band.x, y=band.low, mode="lines", line={"width": 0, **shape},
                                    fill="tonexty", fillcolor=_alpha(color), legendgroup=strategy,
                                    showlegend=False, hoverinfo="skip"))
        figure.add_trace(go.Scatter(x=band.x, y=band["mean"], mode="lines", name=strategy,
                                    legendgroup=strategy,
                                    line={"color": color, "width": line_width(i),
                                          "dash": PLOTLY_DASHES[i % len(PLOTLY_DASHES)], **shape}))
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
        time = "-" if s["time_to_target_s"] is None else _pm(
            s["time_to_target_s"], s.get("time_to_target_std"), ".1f", " s")
        rows.append((str(s.get("rank", "-")), strategy, reached, _num(s["trials_to_target"], ".1f"),
                     _pm(s["best_mean"], s["best_std"]), _pm(s["test_mean"], s["test_std"]), time,
                     _num(s["epochs"], ".0f"),
                     _num(None if s["pruned_share"] is None else 100 * s["pruned_share"], ".0f", "%"),
                     _num(s["wall_s"], ".1f", " s")))
    return rows


def _pm(mean: float | None, std: float | None, spec: str = ".4f", unit: str = "") -> str:
    if mean is None:
        return "-"
    return f"{mean:{spec}}{unit}" if std is None else f"{mean:{spec}} ± {std:{spec}}{unit}"


def plural(count: int, word: str) -> str:
    """`1 repeat`, `3 repeats`."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _num(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def report_markdown(comparison: Comparison, files: list[str]) -> str:
    settings = comparison.settings
    lines = [f"# Comparison {comparison.name}", "",
             f"Space `{settings['space']}` ({settings['data']}), objective `{comparison.objective}` "
             f"({comparison.direction}). Strategies {', '.join(settings['strategies'])}; "
             f"{plural(settings['trials'], 'trial')} per study, "
             f"{plural(settings['repeats'], 'repeat')} (seed "
             f"{settings['seed']}), pruner {settings['pruner']}, at most {settings['max_epochs']} "
             "epochs per trial; the same data split for every study.", ""]
    if comparison.grid is not None:
        lines += [comparison.grid.describe().capitalize() + ".", ""]
    for note in comparison.notes:
        lines += [f"**Note**: {note}.", ""]
    target = "-" if comparison.target is None else f"{comparison.target:.4g}"
    lines += [f"Target: {comparison.objective} {target}. Test: `{comparison.test_metric}` of each "
              "study's best trial, on the held-out split. Time: the time a study had trials "
              "running (trials trained together count once). "
              "Ranked by the repeats that reached the target, the trials they took, then the best "
              "value.", "",
              "| " + " | ".join(SUMMARY_HEADERS) + " |",
              "|" + "---|" * len(SUMMARY_HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(comparison)]
    lines.append("")
    for name, caption in (("best_vs_trial.png", "Best so far against trials"),
                          ("best_vs_time.png", "Best so far against time with trials running")):
        if name in files:
            lines += [f"![{caption}]({name})", ""]
    links = [f"[{f}]({f})" for f in ("curves.html", "summary.csv", "studies.csv", "trials.csv")
             if f in files]
    lines += [f"Files: {', '.join(links)}.", ""]
    if comparison.interrupted:
        lines += ["**Interrupted**: run the same command again to finish the comparison.", ""]
    return "\n".join(lines)
