"""Multi-objective studies: the Pareto front, and picking one member of it by position or by a
condition (`params<50000`). Optuna cannot prune a multi-objective trial, so these studies run
without a pruner; everything else (the run loop, workers, stopping rules) is shared."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import TunerError
from tuner.search._study import ATTR_OBJECTIVES, TRIAL_CONSTRAINTS, TRIAL_METRICS, TRIAL_PARAMS


@dataclass(frozen=True)
class FrontMember:
    """One Pareto-optimal trial: its number, objective values (space order), and feasibility."""

    number: int
    values: tuple[float, ...]
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    feasible: bool


def objectives_of(study: optuna.Study) -> list[tuple[str, str]]:
    stored = study.user_attrs.get(ATTR_OBJECTIVES)
    if stored:
        return [(str(k), str(d)) for k, d in stored]
    return [(f"objective_{i}", d.name.lower()) for i, d in enumerate(study.directions)]


def pareto_front(study: optuna.Study, feasible_only: bool = False) -> list[FrontMember]:
    """Complete trials no other complete trial dominates, sorted by the first objective (best
    first). Infeasible trials stay on the front (marked) unless `feasible_only`."""
    signs = [1.0 if d.name == "MAXIMIZE" else -1.0 for d in study.directions]
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE
              and t.values is not None]
    if feasible_only:
        trials = [t for t in trials if _feasible(t)]
    scored = [(t, [s * v for s, v in zip(signs, t.values, strict=True)]) for t in trials]

    def dominated(a: list[float]) -> bool:
        return any(all(x >= y for x, y in zip(b, a, strict=True)) and b != a for _, b in scored)

    front = [t for t, score in scored if not dominated(score)]
    front.sort(key=lambda t: (-signs[0] * t.values[0], t.number))
    return [FrontMember(t.number, tuple(t.values), dict(t.user_attrs.get(TRIAL_PARAMS, t.params)),
                        dict(t.user_attrs.get(TRIAL_METRICS, {})), _feasible(t)) for t in front]


def _feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.user_attrs.get(TRIAL_CONSTRAINTS, ()))


_CONDITION = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(<=|>=|<|>)\s*([-+0-9.eE_kK]+)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


def parse_condition(text: str) -> tuple[str, str, float]:
    """`params<50000`, `latency<=2`, `val_accuracy>=0.95`; `50k` means 50000."""
    match = _CONDITION.match(text)
    if match is None:
        raise TunerError(f"cannot read condition {text!r}; write e.g. 'params<50000'")
    key, op, number = match.groups()
    number = number.replace("_", "")
    scale = 1000.0 if number[-1] in "kK" else 1.0
    try:
        return key, op, float(number.rstrip("kK")) * scale
    except ValueError:
        raise TunerError(f"cannot read the number in condition {text!r}") from None


def pick(study: optuna.Study, index: int | None = None, where: str | None = None) -> FrontMember:
    """A front member: by position in the (sorted) front, or the best on the first objective
    among trials meeting `where` (e.g. the most accurate model under 50k parameters)."""
    if index is not None and where is not None:
        raise TunerError("pick a front member by index or by condition, not both")
    if where is None:
        front = pareto_front(study)
        if not front:
            raise TunerError(f"study {study.study_name!r} has no complete trial yet")
        i = 0 if index is None else index
        if not -len(front) <= i < len(front):
            raise TunerError(f"front index {i} is out of range: the front has {len(front)} "
                             "member(s)")
        return front[i]
    key, op, bound = parse_condition(where)
    names = [k for k, _ in objectives_of(study)]
    candidates = [m for m in pareto_front(study)
                  if _value(m, names, key) is not None
                  and _OPS[op](_value(m, names, key) or 0.0, bound)]
    if not candidates:
        known = ", ".join(sorted(set(names) | set(_first_metrics(study))))
        raise TunerError(f"no front member has {where} (known keys: {known})")
    return candidates[0]  # the front is sorted best-first on the first objective


def front_trial(study: optuna.Study, index: int | None = None,
                where: str | None = None) -> FrozenTrial:
    """The frozen trial of a front member (see `pick`)."""
    number = pick(study, index, where).number
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _value(member: FrontMember, names: list[str], key: str) -> float | None:
    if key in names:
        return member.values[names.index(key)]
    value = member.metrics.get(key)
    return None if value is None else float(value)


def _first_metrics(study: optuna.Study) -> list[str]:
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            return list(t.user_attrs.get(TRIAL_METRICS, {}))
    return []


def front_table(study: optuna.Study) -> list[dict[str, Any]]:
    names = [k for k, _ in objectives_of(study)]
    return [{"trial": m.number, **dict(zip(names, m.values, strict=True)),
             "feasible": m.feasible, "config": m.params} for m in pareto_front(study)]


def format_front(study: optuna.Study) -> str:
    names = [k for k, _ in objectives_of(study)]
    lines = [f"Pareto front of {study.study_name} ({len(pareto_front(study))} trials): "
             + ", ".join(f"{k} ({d})" for k, d in objectives_of(study))]
    for i, m in enumerate(pareto_front(study)):
        values = ", ".join(f"{k}={_num(v)}" for k, v in zip(names, m.values, strict=True))
        lines.append(f"  [{i}] trial {m.number}: {values}{'' if m.feasible else ' (infeasible)'}")
    return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def finite(values: Sequence[float] | None) -> bool:
    return values is not None and all(math.isfinite(v) for v in values)

