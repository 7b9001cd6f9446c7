"""Choosing a study's final configuration on more than one lucky validation score.

The best trial's value is the best of many noisy draws (a seed, a set of validation rows, the
epoch that scored best on them), so it is optimistic. The `top_k` best trials are trained again
on cross-validation folds of train + validation, reshuffled (other validation rows than the
study's), each for the epochs its trial kept and scored after the last one: the way the final
model is trained (each configuration's folds as one pack: they share its shapes). The best
mean wins; with `ensemble: N`, the average of the N best competes on
the same folds. The test split is not looked at. The raw best's *optimism* is its validation
value minus its re-evaluated score (the other way round for a minimised metric): how much of
the best value was luck.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from tuner.data import Dataset, reshuffled_folds
from tuner.errors import DataError
from tuner.execution._final import Recipe, recipe_of
from tuner.space import ReevaluationPlan, Space, TrialConfig, is_better
from tuner.training import (
    NonFiniteLoss,
    PackedTrial,
    average_outputs,
    criterion,
    fit_packed,
    predict,
    score,
    training_budget,
    training_bytes,
)

# Folds larger than this train one at a time: a pack holds its folds' rows in one table.
_PACKED_FOLDS_BYTES = 64 << 20


@dataclass
class Candidate:
    """One re-evaluated trial: its recipe, its own validation value and its fold scores."""

    recipe: Recipe
    raw: float
    scores: list[float] = field(default_factory=list)  # one per (shuffle, fold)
    outputs: list[torch.Tensor | None] = field(default_factory=list)  # each fold's val outputs

    @property
    def value(self) -> float:
        finite = self.scores and all(math.isfinite(s) for s in self.scores)
        return float(np.mean(self.scores)) if finite else math.nan


@dataclass(frozen=True)
class Choice:
    """The final configuration(s), and why: decided on validation rows only."""

    kind: str  # "single" (the best trial as it scored), "re-evaluated", "ensemble"
    members: tuple[Recipe, ...]
    value: float  # the validation score the choice stands on
    reason: str
    raw_best: int
    raw_value: float
    plan: str = "off"
    raw_reevaluated: float | None = None
    optimism: float | None = None
    reevaluated: dict[int, float] = field(default_factory=dict)
    ensemble_value: float | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """What the study records (`tuner best` prints it) and the run's JSON summary shows."""
        return {"kind": self.kind, "trials": [m.number for m in self.members],
                "value": _clean(self.value), "reason": self.reason, "plan": self.plan,
                "raw_best_trial": self.raw_best, "raw_best_value": _clean(self.raw_value),
                "raw_best_reevaluated": _clean(self.raw_reevaluated),
                "optimism": _clean(self.optimism),
                "reevaluated": {str(k): _clean(v) for k, v in self.reevaluated.items()},
                "ensemble_value": _clean(self.ensemble_value),
                "reevaluate_s": round(self.seconds, 3)}


def top_trials(study: optuna.Study, k: int, direction: str) -> list[FrozenTrial]:
    """The `k` complete trials with the best values, best first."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
    sign = -1.0 if direction == "maximize" else 1.0
    complete.sort(key=lambda t: (sign * float(t.value or 0.0), t.number))
    return complete[:k]


def choose(space: Space, study: optuna.Study, best: FrozenTrial,
           plan: ReevaluationPlan) -> Choice:
    """The final configuration: `best` as it scored, or the best re-evaluated of the top trials,
    or an ensemble of them. `best` is the study's best trial."""
    single = Choice("single", (recipe_of(best, space),), float(best.value or 0.0),
                    f"trial {best.number}: the best validation score "
                    f"{best.value:.4g} (re-evaluation off)", best.number, float(best.value or 0.0))
    if not plan.on:
        return single
    started = time.perf_counter()
    direction = space.objective.direction
    trials = top_trials(study, plan.top_k, direction)
    try:
        candidates = _reevaluate(space, trials, plan)
    except DataError as exc:  # folds cannot be made (a class too rare): keep the raw choice
        return replace(single, reason=f"{single.reason}; re-evaluation skipped: {exc}")
    return _decide(space, single, candidates, plan, time.perf_counter() - started)


def _reevaluate(space: Space, trials: list[FrozenTrial],
                plan: ReevaluationPlan) -> list[Candidate]:
    """Each trial's recipe trained on every fold's training rows for its epochs, with no
    per-epoch validation (nothing is chosen on it); each fold's validation rows scored."""
    candidates = [Candidate(recipe_of(t, space), float(t.value or 0.0)) for t in trials]
    folds = [fold for repeat in range(plan.repeats)
             for fold in reshuffled_folds(space.data, plan.folds, repeat)]
    for c in candidates:
        c.scores, c.outputs = [math.nan] * len(folds), [None] * len(folds)
    packs: dict[tuple[Any, ...], list[tuple[Candidate, int]]] = {}
    budget = training_budget("cpu")
    for c in candidates:
        config = TrialConfig.from_params(c.recipe.params)
        for slot, fold in enumerate(folds):
            key = _pack_of(c.recipe.number, config, slot, fold, len(folds), budget)
            packs.setdefault(key, []).append((c, slot))
    for members in packs.values():
        _train_folds(space, members, folds, plan.folds)
    return candidates


def _pack_of(number: int, config: TrialConfig, slot: int, fold: Dataset, n_folds: int,
             budget: int | None) -> tuple[Any, ...]:
    """What trial `number`'s folds must share to train as one pack: the pack's columns,
    outputs and class weights; batch norm, the rows count. Large folds, and models of which
    `n_folds` would not fit in `budget` bytes together, train alone."""
    together = n_folds * training_bytes(config, fold.n_features, fold.n_outputs,
                                        min(config.batch_size, len(fold.train)))
    alone = fold.train.x.numel() * fold.train.x.element_size() > _PACKED_FOLDS_BYTES or (
        budget is not None and together > budget)
    return (number, fold.n_features, fold.n_outputs, fold.class_weights,
            len(fold.train) if config.batch_norm else 0, slot if alone else -1)


def _train_folds(space: Space, members: list[tuple[Candidate, int]], folds: list[Dataset],
                 per_repeat: int) -> None:
    trials = [PackedTrial((c.recipe.number, slot), TrialConfig.from_params(c.recipe.params),
                          _seed(c.recipe.seed, *divmod(slot, per_repeat)),
                          train=folds[slot].train,
                          epochs=c.recipe.epochs) for c, slot in members]
    first = folds[members[0][1]]
    blind = replace(first, val=replace(first.val, x=first.val.x[:0], y=first.val.y[:0]))
    done = fit_packed(trials, blind, max_epochs=max(c.recipe.epochs for c, _ in members),
                      early_stopping=None, monitor=space.objective.key,
                      monitor_direction=space.objective.direction, loss=space.training.loss)
    for (candidate, slot), finished in zip(members, done, strict=True):
        if isinstance(finished.error, NonFiniteLoss):
            continue
        if finished.error is not None:
            raise finished.error
        assert finished.result is not None
        out = predict(finished.result.model, folds[slot].val.x)
        candidate.scores[slot] = _metric(space, folds[slot], out)
        candidate.outputs[slot] = out


def _metric(space: Space, fold: Dataset, out: torch.Tensor) -> float:
    metrics = score(fold, fold.val, out, prefix="val_",
                    loss_fn=criterion(fold, space.training.loss))
    return float(metrics.get(space.objective.key, math.nan))


def _seed(seed: int, repeat: int, fold: int) -> int:
    return int(np.random.SeedSequence([seed, repeat, fold]).generate_state(1)[0] % 2**31)


def _decide(space: Space, single: Choice, candidates: list[Candidate], plan: ReevaluationPlan,
            seconds: float) -> Choice:
    direction = space.objective.direction
    ranked = [c for c in candidates if math.isfinite(c.value)]
    ranked.sort(key=lambda c: -c.value if direction == "maximize" else c.value)
    raw = next((c for c in candidates if c.recipe.number == single.raw_best), None)
    raw_re = raw.value if raw is not None and math.isfinite(raw.value) else None
    optimism = None if raw_re is None else (
        single.raw_value - raw_re if direction == "maximize" else raw_re - single.raw_value)
    base = replace(single, plan=plan.describe(), raw_reevaluated=raw_re, optimism=optimism,
                   reevaluated={c.recipe.number: c.value for c in candidates}, seconds=seconds)
    if not ranked:
        return replace(base, reason=f"{single.reason.split(' (')[0]}; every re-evaluation "
                       "diverged, so the raw best is kept")
    top = ranked[0]
    raw_note = (f"raw best trial {single.raw_best}: {single.raw_value:.4g} on validation, "
                f"{_fmt(raw_re)} re-evaluated")
    chosen = replace(base, kind="re-evaluated", members=(top.recipe,), value=top.value,
                     reason=f"trial {top.recipe.number}: the best re-evaluated score "
                     f"{top.value:.4g} of the top {len(candidates)} ({plan.folds} folds x "
                     f"{plan.repeats}); {raw_note}")
    if plan.ensemble < 2 or len(ranked) < 2:
        return chosen
    members = ranked[:plan.ensemble]
    value = _ensemble_score(space, members, plan)
    numbers = ", ".join(str(m.recipe.number) for m in members)
    if math.isfinite(value) and is_better(direction, value, top.value):
        return replace(chosen, kind="ensemble", members=tuple(m.recipe for m in members),
                       value=value, ensemble_value=value,
                       reason=f"the average of trials {numbers} scores {value:.4g} on the "
                       f"re-evaluation folds, better than the best single configuration's "
                       f"{top.value:.4g} (trial {top.recipe.number}); {raw_note}")
    return replace(chosen, ensemble_value=value, reason=f"{chosen.reason}; the average of "
                   f"trials {numbers} scored {_fmt(value)}, no better")


def _ensemble_score(space: Space, members: list[Candidate], plan: ReevaluationPlan) -> float:
    """The members' averaged outputs scored on each fold (the same folds they were scored on)."""
    values = []
    for repeat in range(plan.repeats):
        for i, fold in enumerate(reshuffled_folds(space.data, plan.folds, repeat)):
            outs = [m.outputs[repeat * plan.folds + i] for m in members]
            if any(o is None for o in outs):
                return math.nan
            values.append(_metric(space, fold, average_outputs(
                [o for o in outs if o is not None], fold.task)))
    return float(np.mean(values))


def _fmt(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _clean(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
