"""A guard for samplers whose cost grows with the study (GP: cubic in the number of trials).

When the time spent choosing parameters passes a share of the trial time (median over the last
few trials), the guard warns once and hands the rest of the study to a cheaper sampler.
"""

from __future__ import annotations

import datetime
import logging
import statistics
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

_log = logging.getLogger("tuner")
ATTR_FALLBACK = "tuner.sampler_fallback"


class GuardedSampler(BaseSampler):
    def __init__(self, inner: BaseSampler, fallback: BaseSampler, max_share: float = 0.25,
                 window: int = 5, min_trials: int = 10):
        self.inner = inner
        self.fallback = fallback
        self.max_share = max_share
        self.min_trials = min_trials
        self.switched = False
        self._spent: dict[int, float] = {}
        self._shares: deque[float] = deque(maxlen=window)
        self._seen = 0

    @property
    def active(self) -> BaseSampler:
        return self.fallback if self.switched else self.inner

    def _timed(self, number: int, fn: Any, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._spent[number] = self._spent.get(number, 0.0) + time.perf_counter() - start

    def infer_relative_search_space(self, study: Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._timed(trial.number, self.active.infer_relative_search_space, study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._timed(trial.number, self.active.sample_relative, study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._timed(trial.number, self.active.sample_independent, study, trial, param_name,
                           param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.active.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.active.after_trial(study, trial, state, values)
        spent = self._spent.pop(trial.number, 0.0)
        if trial.datetime_start is None or self.switched:
            return
        now = datetime.datetime.now(tz=trial.datetime_start.tzinfo)
        total = max((now - trial.datetime_start).total_seconds(), 1e-9)
        self._shares.append(spent / total)
        self._seen += 1
        share = statistics.median(self._shares)
        if self._seen >= self.min_trials and share > self.max_share:
            self.switched = True
            message = (f"{type(self.inner).__name__} spent {share:.0%} of recent trial time "
                       f"choosing parameters (its cost grows with the number of trials); "
                       f"switching to {type(self.fallback).__name__} from trial "
                       f"{trial.number + 1}")
            _log.warning(message)
            with_study = getattr(study, "set_user_attr", None)
            if with_study is not None:
                with_study(ATTR_FALLBACK, message)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self.fallback.reseed_rng()



