"""Strategy and pruner names → Optuna samplers and pruners, seeded."""

from __future__ import annotations

import numpy as np
import optuna

from tuner._errors import TunerError
from tuner._guard import GuardedSampler
from tuner._spec import PRUNERS, STRATEGIES, PrunerSpec


def make_sampler(strategy: str, seed: int) -> optuna.samplers.BaseSampler:
    if strategy in ("random", "grid"):
        # Grid points are enqueued and claimed from the study's queue (exactly once, also with
        # several workers); the random sampler is never asked while the queue is not empty.
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          constant_liar=True)
    if strategy == "gp":
        # GP's cost per suggestion grows cubically with the trials; past a share of the trial
        # time, the rest of the study goes to TPE (warned once, recorded on the study).
        return GuardedSampler(optuna.samplers.GPSampler(seed=seed),
                              optuna.samplers.TPESampler(seed=seed, multivariate=True,
                                                         constant_liar=True))
    if strategy == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if strategy == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if strategy == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True,
                                          warn_independent_sampling=False)
    raise TunerError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


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


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A trial's torch seed: a function of (study seed, trial number) only."""
    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0])
