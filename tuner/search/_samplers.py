"""Strategy and pruner names -> Optuna samplers and pruners, seeded so that trials never repeat
each other across processes, and guarded where a sampler's cost grows with the study.

Two processes that each build `RandomSampler(seed=0)` draw the same sequence: with several
workers, or a resumed study, trials would repeat each other's parameters. So every trial gets its
own sampler, seeded from (study seed, trial number) (`PerTrialSampler`): a trial's draws depend
only on its number and on the study's history, never on which process asked for it. QMC keeps
one sampler: its sequence is already indexed by the study, and a per-trial scramble would break it.

GP's cost per suggestion grows cubically with the trials: `GuardedSampler` hands the rest of the
study to TPE once choosing parameters takes over a share of the trial time (warned once,
recorded on the study). The guard wraps the per-trial samplers, so it lives as long as the study
object and counts every trial this process runs.
"""

from __future__ import annotations

import datetime
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import TunerError
from tuner.space import MULTI_STRATEGIES, PRUNERS, STRATEGIES, PrunerSpec

_log = logging.getLogger("tuner")
ATTR_FALLBACK = "tuner.sampler_fallback"
# TPE's and GP's random start-up trials (Optuna's default, set here so that it is known): with
# the per-trial seeds, random, tpe and gp draw the same parameters for the first trials of a seed.
STARTUP_TRIALS = 10
SHARED_START = ("random", "tpe", "gp")


def shared_start_note(strategies: Sequence[str], trials: int) -> str | None:
    """A warning when a comparison's budget ends within the start-up trials: then random, tpe and
    gp run identical parameters, and any difference between them is noise (timing, mostly)."""
    same = [s for s in strategies if s in SHARED_START]
    if len(same) < 2 or trials > STARTUP_TRIALS:
        return None
    return (f"{trials} trials per study are within the {STARTUP_TRIALS} random start-up trials "
            f"of tpe and gp: in each repeat {', '.join(same)} run identical parameters, so their "
            f"differences are noise; compare them with more than {STARTUP_TRIALS} trials")


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A trial's torch seed: a function of (study seed, trial number) only."""
    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0])


# NSGA-II's generation: Optuna's default. A quarter of a small budget (6 of 24 trials) bred
# worse fronts on digits_multi.yaml than its random first generation (hypervolume 0.691 against
# 0.712 over 4 seeds; 12: 0.717; multi-objective TPE: 0.720: `benchmarks.run --only multi`).
NSGA2_POPULATION = 50


def make_sampler(strategy: str, seed: int, multi: bool = False) -> BaseSampler:
    """One plain Optuna sampler for `strategy` (`seeded_sampler` is what a study uses)."""
    if multi and strategy not in MULTI_STRATEGIES:
        raise TunerError(f"strategy {strategy!r} cannot search several objectives; use one of "
                         f"{', '.join(MULTI_STRATEGIES)}")
    if strategy in ("random", "grid"):
        # Grid points are enqueued and claimed from the study's queue (exactly once, also with
        # several workers); the random sampler is never asked while the queue is not empty.
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS,
                                          multivariate=True, group=not multi,
                                          constant_liar=True)
    if strategy == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    if strategy == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if strategy == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=NSGA2_POPULATION)
    if strategy == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True,
                                          warn_independent_sampling=False)
    raise TunerError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


def seeded_sampler(strategy: str, seed: int, multi: bool = False) -> BaseSampler:
    """The sampler of a study: per-trial seeds; GP guarded (single objective) by TPE."""
    if strategy == "qmc":
        return make_sampler(strategy, seed, multi)

    def per_trial(name: str) -> PerTrialSampler:
        type_name = type(make_sampler(name, seed, multi)).__name__
        return PerTrialSampler(lambda s: make_sampler(name, s, multi), seed, type_name)

    if strategy == "gp" and not multi:
        return GuardedSampler(per_trial("gp"), per_trial("tpe"))
    return per_trial(strategy)


def sampler_name(sampler: BaseSampler) -> str:
    if isinstance(sampler, GuardedSampler):
        return sampler_name(sampler.active)
    return sampler.name if isinstance(sampler, PerTrialSampler) else type(sampler).__name__


def make_pruner(spec: PrunerSpec, max_epochs: int) -> optuna.pruners.BasePruner:
    if spec.name == "none":
        return optuna.pruners.NopPruner()
    if spec.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials,
                                           n_warmup_steps=spec.warmup_epochs)
    if spec.name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.min_resource,
                                                      reduction_factor=spec.reduction_factor)
    if spec.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec.min_resource,
                                              max_resource=max_epochs,
                                              reduction_factor=spec.reduction_factor)
    raise TunerError(f"unknown pruner {spec.name!r}; choose from {', '.join(PRUNERS)}")


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

    def infer_relative_search_space(self, study: Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        sampler = self._of(trial)
        with self._lock:
            self._samplers.pop(trial.number, None)
        sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # the seeds are the point; nothing to reseed
        pass


class GuardedSampler(BaseSampler):
    """Times `inner`'s choices; once they take more than `max_share` of the recent trial time
    (median over `window` trials, after `min_trials`), warns once and uses `fallback`."""

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
        self._resumed = False

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
        if not self._resumed:  # a study that switched before (another run, another worker)
            self._resumed = True
            self.switched = self.switched or ATTR_FALLBACK in study.user_attrs
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
            message = (f"{sampler_name(self.inner)} spent {share:.0%} of recent trial time "
                       f"choosing parameters (its cost grows with the number of trials); "
                       f"switching to {sampler_name(self.fallback)} from trial "
                       f"{trial.number + 1}")
            _log.warning(message)
            study.set_user_attr(ATTR_FALLBACK, message)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
        self.fallback.reseed_rng()
