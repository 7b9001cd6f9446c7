"""Parameter importances of a study: Optuna's PED-ANOVA, as Optuna and Optuna Dashboard compute
them by default, over the complete trials.

PED-ANOVA compares where the best trials put each parameter with where the study's trials did,
so it fits no model: milliseconds for a thousand trials, where fANOVA's random forest took
6.6 s (`python -m benchmarks.run --only views`), and it covers conditional parameters (a second
layer's width, SGD's momentum), which fANOVA leaves out. Optuna loads it without scikit-learn
(`tuner.search.optuna_importance`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.search import optuna_importance

optuna_importance()  # before `optuna.importance` is named below: scikit-learn stays out
from optuna.importance import BaseImportanceEvaluator, PedAnovaImportanceEvaluator  # noqa: E402

# Optuna's note on PED-ANOVA: the estimate is stable from about five trials among the best.
MIN_BEST = 5
BEST_SHARE = (0.1, 0.5)  # Optuna's default share of the best trials; at most half of them


def best_trials(complete: int) -> int:
    """How many of `complete` trials count as the best ones: a tenth, at least MIN_BEST, at
    most half (ties with the last of them count too)."""
    return math.ceil(_best_share(complete) * complete)


def param_importances(study: optuna.Study) -> dict[str, float]:
    """Each searched parameter's importance to reaching the study's best complete trials
    (`best_trials` of them), most important first, summing to 1. Empty when that cannot be
    told: fewer than two complete trials, no searched parameter, or every trial as good."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    searched = sorted({name for trial in complete for name, distribution
                       in trial.distributions.items() if not distribution.single()})
    if not searched:  # a parameter of one possible value is not searched
        return {}
    evaluator = PedAnovaImportanceEvaluator(target_quantile=_best_share(len(complete)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its note that equal values give equal importances
        found = evaluator.evaluate(study, params=searched)
    total = sum(found.values())
    if not total > 0.0:
        return {}
    return dict(sorted(((name, value / total) for name, value in found.items()),
                       key=lambda item: -item[1]))


class KnownImportances(BaseImportanceEvaluator):
    """Importances computed once, handed to Optuna's plots (which would compute their own)."""

    def __init__(self, importances: dict[str, float]):
        self.importances = importances

    def evaluate(self, study: optuna.Study, params: list[str] | None = None, *,
                 target: Callable[[FrozenTrial], float] | None = None) -> dict[str, float]:
        return dict(self.importances)


def _best_share(complete: int) -> float:
    low, high = BEST_SHARE
    return min(high, max(low, MIN_BEST / complete))
