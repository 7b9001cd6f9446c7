"""The views page at a study's end, as the study grows: as tuner draws it now (PED-ANOVA
importances, Optuna's default; its own bar chart of them; the learning curves as a trace per
outcome) against as it did before 2026-12-07 (fANOVA's importances; Optuna's bar chart, whose
hover text copies every trial once per parameter; a trace per trial), in the same run.

`python -m benchmarks.run --only views`. Each study is synthetic, shaped like the default
space (conditional layer widths and SGD parameters; 20 epochs of intermediate values; a quarter
of the trials pruned) and filled by the random sampler, so that building it costs little. Both
sides build the same interactive page (`study_views(png=False)`, what `tuner run` logs);
imports are paid before the timing starts.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from benchmarks._common import Results, Row, timed


def _objective(trial: optuna.Trial) -> float:
    layers = trial.suggest_int("n_layers", 1, 2)
    widths = [trial.suggest_int(f"units_{i}", 32, 512, log=True) for i in range(layers)]
    trial.suggest_categorical("activation", ["relu", "tanh", "gelu"])
    lr = trial.suggest_float("lr", 1e-4, 3e-2, log=True)
    momentum = 0.9
    if trial.suggest_categorical("optimizer", ["adam", "sgd"]) == "sgd":
        momentum = trial.suggest_float("momentum", 0.5, 0.95)
        trial.suggest_categorical("nesterov", [True, False])
    trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128])
    final = 0.97 - 0.02 * (math.log10(lr) + 2.5) ** 2 - 0.05 * (0.9 - momentum) ** 2 \
        + 0.005 * math.log2(widths[0] / 32) / 4
    for epoch in range(20):
        trial.report(final * (1 - np.exp(-(epoch + 1) / 4)), epoch)
    if trial.number % 4 == 3:
        raise optuna.TrialPruned
    return final


def _study(trials: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective, n_trials=trials)
    return study


@contextmanager
def _before(study: optuna.Study) -> Iterator[None]:
    """`study`'s views page as tuner drew it before: fANOVA's importances, Optuna's bar chart
    (which reads the study itself), a trace per trial's learning curve."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    import tuner.analysis._views as views
    from tuner.analysis._importances import KnownImportances
    from tuner.search import plotly_optuna_views

    def importances(drawn: optuna.Study) -> dict[str, float]:
        try:
            return get_param_importances(drawn, evaluator=FanovaImportanceEvaluator(seed=0))
        except (ValueError, RuntimeError):
            return {}

    def bars(trials: Any, found: dict[str, float], target: str) -> Any:
        return plotly_optuna_views().plot_param_importances(
            study, evaluator=KnownImportances(found), target_name=target)

    def curves(backend: Any, trials: list[FrozenTrial], target: str) -> Any:
        """The learning curves as one trace per trial (the page's only backend: plotly)."""
        import plotly.graph_objects as go

        figure = go.Figure()
        shown: set[str] = set()
        for t in trials:
            label = "pruned" if t.state == TrialState.PRUNED else "complete"
            steps = sorted(t.intermediate_values)
            figure.add_trace(go.Scatter(
                x=steps, y=[t.intermediate_values[s] for s in steps], mode="lines+markers",
                name=label, legendgroup=label, showlegend=label not in shown,
                line={"color": views.COLORS[3 if label == "pruned" else 0]}, opacity=0.6,
                hovertext=f"trial {t.number} ({label})"))
            shown.add(label)
        figure.update_layout(xaxis_title="epoch", yaxis_title=target, height=450)
        return figure

    kept: Any = (views.param_importances, views._importance_bars, views._curves)
    views.param_importances = importances  # type: ignore[assignment]
    views._importance_bars = bars  # type: ignore[assignment]
    views._curves = curves  # type: ignore[assignment]
    try:
        yield
    finally:
        views.param_importances, views._importance_bars, views._curves = kept


def run(results: Results, quick: bool = False) -> None:
    from tuner.analysis import study_views

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    repeats = 2 if quick else 3
    for size in (30, 300) if quick else (30, 300, 1000):
        study = _study(size)
        page = functools.partial(study_views, study, png=False)
        with _before(study):
            page()  # imports (scikit-learn) before the timing
        now_s, before_s = [], []
        for i in range(repeats):
            for side in ("now", "before") if i % 2 == 0 else ("before", "now"):
                if side == "now":
                    now_s.append(timed(page))
                else:
                    with _before(study):
                        before_s.append(timed(page))
        ratio = statistics.median(n / b for n, b in zip(now_s, before_s, strict=True))
        results.add(Row("views", f"views page, {size} trials: now / before (fANOVA, Optuna's "
                        "bars, a trace per trial)", ratio, "x", "", None,
                        f"{statistics.median(now_s):.2f} s vs {statistics.median(before_s):.2f}"
                        f" s; median of {repeats} interleaved"))
