"""When a study's sampler may be asked for another trial, so that trials asked together (a pack,
workers, Dask tasks) mean what trials asked one at a time mean.

TPE and GP draw their first trials at random until enough are told (`RandomStart`); NSGA-II
breeds each generation from the complete trials of the one before (`Generations`). A trial
asked while the trials running would complete either is drawn at random, or from the
generation before, although its strategy says otherwise: `asking_rule(...).room(trials)` says
how many may be asked now. `batch_limit` bounds how many one process has asked and not told;
`random_start_note` says when a study's model never started.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from tuner.search import _samplers
from tuner.search._optuna import ga_generation
from tuner.search._samplers import STARTUP_TRIALS, sampler_name


@dataclass(frozen=True)
class RandomStart:
    """The trials a sampler draws at random before its model takes over: until `trials` of the
    study are in one of the `counted` states (TPE counts complete and pruned trials, GP complete
    ones only)."""

    trials: int
    counted: tuple[TrialState, ...]

    def room(self, trials: Sequence[FrozenTrial]) -> int | None:
        """How many new trials may be asked now so that none is drawn at random while the
        trials running could still bring the model its start: once they are counted, the next
        trial is the model's choice. None: no limit (the start is over). Never 0 with nothing
        running: a study whose trials fail goes on."""
        counted = sum(t.state in self.counted for t in trials)
        if counted >= self.trials:
            return None
        running = sum(t.state == TrialState.RUNNING for t in trials)
        return max(self.trials - counted - running, 0)

    def model_trials(self, trials: Sequence[FrozenTrial]) -> int:
        """How many of `trials` were asked once the start was over: the model's choices."""
        ends = sorted(t.datetime_complete for t in trials
                      if t.state in self.counted and t.datetime_complete is not None)
        return sum(bisect.bisect_right(ends, t.datetime_start) >= self.trials
                   for t in trials if t.datetime_start is not None)


@dataclass(frozen=True)
class Generations:
    """NSGA-II breeds each generation from the complete trials of the one before: a trial asked
    while the current generation has fewer than `population` complete trials joins it, drawn
    from the same parents (the first generation: at random)."""

    population: int

    def room(self, trials: Sequence[FrozenTrial]) -> int | None:
        """How many new trials may be asked now so that none joins a generation that the trials
        running will fill (None: the generation is complete; the next trial opens the next)."""
        complete: dict[int, int] = {}
        for trial in trials:
            generation = ga_generation(trial)
            if trial.state == TrialState.COMPLETE and generation is not None:
                complete[generation] = complete.get(generation, 0) + 1
        current = max(complete, default=0)
        if complete.get(current, 0) >= self.population:
            return None
        running = sum(t.state == TrialState.RUNNING and ga_generation(t) in (current, None)
                      for t in trials)
        return max(self.population - complete.get(current, 0) - running, 0)


# Optuna's own rules (TPESampler and GPSampler: `n_startup_trials`, the states they count).
_STARTS = {"tpe": RandomStart(STARTUP_TRIALS, (TrialState.COMPLETE, TrialState.PRUNED)),
           "gp": RandomStart(STARTUP_TRIALS, (TrialState.COMPLETE,))}


# Samplers whose draws do not depend on how the trials so far did (the grid strategy's sampler
# is random): asking many trials at once costs them nothing.
_BLIND = ("RandomSampler", "QMCSampler")


def random_start_note(strategy: str, trials: Sequence[FrozenTrial]) -> str | None:
    """A note when every one of a TPE, GP or NSGA-II study's `trials` was drawn at random: its
    model never started (too few trials, or, for GP, too few complete ones: it does not count
    pruned trials; NSGA-II's first generation), so the study was a random search."""
    if strategy == "nsga2":
        if not trials or any(ga_generation(t) for t in trials):
            return None
        return (f"nsga2 drew all {len(trials)} trials at random: its first generation is "
                f"{_samplers.NSGA2_POPULATION} trials, and it breeds from the second; give it more "
                f"trials, or use tpe, whose model starts after {STARTUP_TRIALS}")
    start = _STARTS.get(strategy)
    if start is None or not trials or start.model_trials(trials) > 0:
        return None
    counted = sum(t.state in start.counted for t in trials)
    gp = TrialState.PRUNED not in start.counted
    return (f"{strategy} drew all {len(trials)} trials at random: its model starts once "
            f"{start.trials} trials are {'complete' if gp else 'finished'}"
            f"{' (it does not count pruned ones)' if gp else ''}, and the study has "
            f"{counted}; give it more trials{' or `--pruner none`' if gp else ''}")


def asking_rule(sampler: BaseSampler) -> RandomStart | Generations | None:
    """What a study's sampler (`seeded_sampler`) needs told before it is asked again: TPE and GP
    their random start, NSGA-II each generation; None: nothing."""
    if sampler_name(sampler) == "NSGAIISampler":
        return Generations(_samplers.NSGA2_POPULATION)
    return random_start(sampler)


def random_start(sampler: BaseSampler) -> RandomStart | None:
    """The random start of a study's sampler (`seeded_sampler`), or None if it has none."""
    return _STARTS.get({"TPESampler": "tpe", "GPSampler": "gp"}.get(sampler_name(sampler), ""))


def batch_limit(sampler: BaseSampler, target: int) -> int | None:
    """The most trials one process should have asked and not yet told (a pack's, those waiting
    for one): a sampler that learns from finished trials learns nothing from trials asked
    together, so a third of the study's budget at most; None for samplers that do not learn."""
    if sampler_name(sampler) in _BLIND:
        return None
    return max(1, -(-target // 3))
