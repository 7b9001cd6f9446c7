"""The static (PNG) slice, contour and parallel-coordinate views of a study, drawn by tuner.

Optuna's matplotlib versions of these draw a categorical parameter with numeric choices (a
`batch_size` of 32, 64, 128) as a continuous axis and interpolate a surface across it, put a
"None" on the axis of a conditional parameter, let tick labels of neighbouring axes overlap and
draw the slice as one long strip. Here: categorical axes show their categories, log parameters
sit on log axes, a trial without a conditional parameter simply has no point (or line segment)
there, each axis labels only its ends, and the slice is a grid of small panels. The interactive
page (views.html, Optuna's plotly figures) stays the primary view; these are its snapshots.

Figures are `matplotlib.figure.Figure` objects, never pyplot: no backend is switched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

CMAP = "viridis"


@dataclass(frozen=True)
class Axis:
    """One searched parameter as an axis: its values per trial (None where absent)."""

    name: str
    values: list[Any]
    choices: tuple[Any, ...] | None  # categorical: the categories, in the space's order
    log: bool
    integer: bool = False

    @property
    def categorical(self) -> bool:
        return self.choices is not None

    def position(self, value: Any) -> float:
        """Where `value` sits on the axis: a category's index, else the value itself."""
        if value is None:
            return math.nan
        if self.choices is not None:
            return float(self.choices.index(value)) if value in self.choices else math.nan
        return float(value)

    def positions(self) -> np.ndarray:
        return np.array([self.position(v) for v in self.values], dtype=float)

    def normalised(self) -> np.ndarray:
        """Positions scaled to [0, 1] (log parameters in log space): a parallel axis."""
        x = self.positions()
        if self.choices is not None:
            return x / max(len(self.choices) - 1, 1)
        if self.log:
            x = np.log10(np.where(x > 0, x, np.nan))
        low, high = np.nanmin(x), np.nanmax(x)
        return np.full_like(x, 0.5) if high == low else (x - low) / (high - low)

    def ends(self) -> tuple[str, str]:
        x = self.positions()
        return _fmt(np.nanmin(x)), _fmt(np.nanmax(x))


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and math.isfinite(t.value)]


def axes_of(trials: list[FrozenTrial], names: list[str] | None = None) -> list[Axis]:
    """An `Axis` per searched parameter (those of `names`, in that order; else alphabetical)."""
    found: dict[str, Any] = {}
    for t in trials:
        for name, distribution in t.distributions.items():
            found.setdefault(name, distribution)
    out = []
    for name in names if names is not None else sorted(found):
        if name not in found:
            continue
        distribution = found[name]
        choices = tuple(distribution.choices) \
            if isinstance(distribution, CategoricalDistribution) else None
        out.append(Axis(name, [t.params.get(name) for t in trials], choices,
                        bool(getattr(distribution, "log", False)),
                        isinstance(distribution, IntDistribution)))
    return out


def slice_figure(study: optuna.Study, target: str) -> Figure:
    """The objective against each parameter, one small panel each, four to a row; colour: the
    trial number (later trials darker)."""
    trials = complete_trials(study)
    axes = axes_of(trials)
    columns = min(4, max(len(axes), 1))
    rows = max(1, math.ceil(len(axes) / columns))
    figure = Figure(figsize=(3.3 * columns + 1.0, 2.8 * rows + 0.7), dpi=90,
                    layout="constrained")
    grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    y = np.array([t.value for t in trials], dtype=float)
    order = np.array([t.number for t in trials], dtype=float)
    drawn = None
    for panel, axis in zip(grid, axes, strict=False):
        x = axis.positions()
        if axis.categorical:
            x = x + _jitter(len(x))
        drawn = panel.scatter(x, y, c=order, cmap=CMAP, s=22, edgecolors="grey", linewidths=0.4)
        _scale(panel, axis, "x")
        panel.set_title(axis.name, fontsize=10)
        panel.grid(alpha=0.3)
    for panel in grid[len(axes):]:
        panel.set_visible(False)
    for panel in grid[::columns]:
        panel.set_ylabel(target)
    if drawn is not None:
        figure.colorbar(drawn, ax=list(grid), label="trial", shrink=0.8)
    figure.suptitle(f"Slice: {target} against each parameter")
    return figure


def contour_figure(study: optuna.Study, params: list[str], target: str) -> Figure:
    """The objective over two parameters: a filled contour when both are numeric (interpolated in
    log space for log parameters), else the trials as points on the categories (no surface is
    invented between categories); colour: the objective."""
    trials = complete_trials(study)
    x_axis, y_axis = axes_of(trials, params)
    figure = Figure(figsize=(7.5, 5.5), dpi=90, layout="constrained")
    panel = figure.subplots()
    x, y = x_axis.positions(), y_axis.positions()
    z = np.array([t.value for t in trials], dtype=float)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y, z = x[keep], y[keep], z[keep]
    low, high = (float(z.min()), float(z.max())) if len(z) else (0.0, 1.0)
    surface = None
    if not (x_axis.categorical or y_axis.categorical):
        surface = _surface(panel, x_axis, y_axis, x, y, z, low, high)
    jx = _jitter(len(x)) if x_axis.categorical else 0.0
    jy = _jitter(len(y), seed=1) if y_axis.categorical else 0.0
    points = panel.scatter(x + jx, y + jy, c=z, cmap=CMAP, vmin=low, vmax=high, s=40,
                           edgecolors="black", linewidths=0.6, zorder=3)
    _scale(panel, x_axis, "x")
    _scale(panel, y_axis, "y")
    panel.set_xlabel(x_axis.name)
    panel.set_ylabel(y_axis.name)
    figure.colorbar(surface if surface is not None else points, ax=panel, label=target)
    panel.set_title(f"{target} over {x_axis.name} and {y_axis.name}"
                    + ("" if surface is not None else " (each point a trial)"))
    return figure


def parallel_figure(study: optuna.Study, target: str, order: list[str] | None = None) -> Figure:
    """One vertical axis per parameter (`order` first, e.g. by importance), the objective first;
    each trial a line coloured by its objective, best drawn on top. An axis is labelled at its
    ends (categories: each category); a trial without a parameter has no segment there."""
    trials = sorted(complete_trials(study), key=lambda t: float(t.value or 0.0))
    if study.direction == optuna.study.StudyDirection.MINIMIZE:
        trials.reverse()  # the best last, so on top
    names = sorted({n for t in trials for n in t.params})
    if order:
        names = [n for n in order if n in names] + [n for n in names if n not in order]
    axes = axes_of(trials, names)
    z = np.array([t.value for t in trials], dtype=float)
    objective = Axis(target, list(z), None, False)
    columns = [objective, *axes]
    width = max(8.0, 1.25 * len(columns) + 1.5)
    figure = Figure(figsize=(width, 5.2), dpi=90, layout="constrained")
    panel = figure.subplots()
    matrix = np.vstack([a.normalised() for a in columns])  # axes x trials
    low, high = (float(z.min()), float(z.max())) if len(z) else (0.0, 1.0)
    import matplotlib

    cmap = matplotlib.colormaps[CMAP]
    span = (high - low) or 1.0
    for i in range(matrix.shape[1]):
        panel.plot(range(len(columns)), matrix[:, i], color=cmap((z[i] - low) / span),
                   alpha=0.75, linewidth=1.3)
    for position, axis in enumerate(columns):
        panel.axvline(position, color="black", linewidth=0.8)
        for level, label in _axis_labels(axis):
            panel.text(position + 0.04, level, label, fontsize=8, va="center", ha="left",
                       bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})
    panel.set_xlim(-0.1, len(columns) - 0.4)
    panel.set_ylim(-0.06, 1.06)
    panel.set_yticks([])
    panel.set_xticks(range(len(columns)), [a.name + (" (log)" if a.log else "") for a in columns],
                     rotation=30, ha="right", fontsize=9)
    for side in ("top", "right", "left"):
        panel.spines[side].set_visible(False)
    mappable = matplotlib.cm.ScalarMappable(cmap=cmap,
                                            norm=matplotlib.colors.Normalize(low, high))
    figure.colorbar(mappable, ax=panel, label=target, fraction=0.03)
    panel.set_title("Parallel coordinates: each line is a trial")
    return figure


def _axis_labels(axis: Axis) -> list[tuple[float, str]]:
    if axis.choices is not None:
        k = len(axis.choices)
        shown = range(k) if k <= 8 else (0, k - 1)
        return [(i / max(k - 1, 1), str(axis.choices[i])) for i in shown]
    bottom, top = axis.ends()
    return [(0.0, bottom), (1.0, top)] if bottom != top else [(0.5, top)]


def _scale(panel: Any, axis: Axis, which: str) -> None:
    """Categories as ticks at their positions; log parameters on a log axis."""
    if axis.choices is not None:
        ticks = range(len(axis.choices))
        labels = [str(c) for c in axis.choices]
        if which == "x":
            panel.set_xticks(ticks, labels, rotation=30 if len(axis.choices) > 4 else 0)
            panel.set_xlim(-0.5, len(axis.choices) - 0.5)
        else:
            panel.set_yticks(ticks, labels)
            panel.set_ylim(-0.5, len(axis.choices) - 0.5)
    elif axis.log:
        (panel.set_xscale if which == "x" else panel.set_yscale)("log")
        # Decades only: labelled minor ticks (4x10^1, 6x10^1) run into each other.
        (panel.xaxis if which == "x" else panel.yaxis).set_minor_formatter(NullFormatter())
    elif axis.integer:
        (panel.xaxis if which == "x" else panel.yaxis).set_major_locator(MaxNLocator(integer=True))


def _surface(panel: Any, x_axis: Axis, y_axis: Axis, x: np.ndarray, y: np.ndarray,
             z: np.ndarray, low: float, high: float) -> Any:
    """A filled contour interpolated linearly between the trials (in log space where log), or
    None when they do not span an area."""
    from scipy.interpolate import griddata

    u = np.log10(x) if x_axis.log else x
    v = np.log10(y) if y_axis.log else y
    if len(z) < 3 or np.ptp(u) == 0 or np.ptp(v) == 0:
        return None
    gu, gv = np.meshgrid(np.linspace(u.min(), u.max(), 100), np.linspace(v.min(), v.max(), 100))
    try:
        gz = griddata((u, v), z, (gu, gv), method="linear")
    except Exception:  # e.g. all points on a line (QhullError)
        return None
    gx = 10 ** gu if x_axis.log else gu
    gy = 10 ** gv if y_axis.log else gv
    return panel.contourf(gx, gy, gz, levels=np.linspace(low, high, 12) if high > low else 12,
                          cmap=CMAP, alpha=0.85)


def _jitter(n: int, seed: int = 0) -> np.ndarray:
    """A small random offset so that trials with the same category do not hide each other."""
    return np.random.default_rng(seed).uniform(-0.15, 0.15, n)


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.2e}"
    return f"{value:.4g}"
