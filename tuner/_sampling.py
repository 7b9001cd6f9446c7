"""Samplers seeded per trial, so that parallel workers and hosts never draw the same parameters.

Two processes that each build `RandomSampler(seed=0)` draw the same sequence: with several
workers, or a resumed study, trials would repeat each other's parameters. Here every trial gets
its own sampler, seeded from (study seed, trial number): a trial's draws depend only on its
number and on the study's history, never on which process asked for it. QMC keeps one sampler:
its sequence is already indexed by the study, and a per-trial scramble would break it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, QMCSampler
from optuna.trial import FrozenTrial, TrialState

from tuner._strategies import make_sampler, trial_seed


def seeded_sampler(strategy: str, seed: int) -> BaseSampler:
    sampler = make_sampler(strategy, seed)
    if isinstance(sampler, QMCSampler):
        return sampler
    return PerTrialSampler(lambda s: make_sampler(strategy, s), seed, type(sampler).__name__)


def sampler_name(sampler: BaseSampler) -> str:
    return sampler.name if isinstance(sampler, PerTrialSampler) else type(sampler).__name__


class PerTrialSampler(BaseSampler):
    """Delegates each trial to a sampler of its own, seeded by (study seed, trial number)."""

    def __init__(self, factory: Callable[[int], BaseSampler], seed: int, name: str):
        self._factory = factory
        self._seed = seed
        self.name = name
        self._samplers: dict[int, BaseSampler] = {}
        self._lock = threading.Lock()  # Dask runs several trials per process, in threads

    def _of(self, trial: FrozenTrial) -> BaseSampler:
        with self._lock:
            sampler = self._samplers.get(trial.number)
            if sampler is None:
                sampler = self._factory(trial_seed(self._seed, trial.number))
                self._samplers[trial.number] = sampler
            return sampler

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        sampler = self._of(trial)
        with self._lock:
            self._samplers.pop(trial.number, None)
        sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # the seeds are the point; nothing to reseed
        pass
