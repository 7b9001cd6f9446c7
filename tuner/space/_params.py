"""Search-space parameters: frozen, self-validating, one definition for sampler and grid.

Each parameter gives Optuna a distribution (random / Bayesian strategies) and a finite list of
grid values (grid strategy) from the same bounds, so every strategy searches the same box.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

if TYPE_CHECKING:  # Optuna loads with the study, not with the space file (`tuner validate`)
    import optuna
    from optuna.distributions import BaseDistribution

Scalar: TypeAlias = bool | int | float | str | None


class ParamError(ValueError):
    """A parameter definition that cannot be used; `key` names the offending field."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Condition:
    """The parameter exists only when `parent` took one of `values`."""

    parent: str
    values: frozenset[Scalar]

    def holds(self, assigned: Mapping[str, Any]) -> bool:
        return self.parent in assigned and assigned[self.parent] in self.values

    def describe(self) -> str:
        shown = sorted(self.values, key=repr)
        return f"{self.parent} in {shown}" if len(shown) > 1 else f"{self.parent} == {shown[0]!r}"


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    grid: tuple[float, ...] | None = None
    grid_points: int | None = None
    when: Condition | None = None

    def __post_init__(self) -> None:
        _check_range(self.low, self.high, self.log, self.step)
        _check_grid(self)

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import FloatDistribution

        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self, default_points: int) -> tuple[Scalar, ...]:
        if self.grid is not None:
            return self.grid
        values = _spaced(self.low, self.high, self.grid_points or default_points, self.log)
        if self.step is not None:
            values = [self.low + round((v - self.low) / self.step) * self.step for v in values]
        return tuple(dict.fromkeys(float(round(v, 12)) for v in values))

    def suggest(self, trial: optuna.Trial) -> Scalar:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def possible_values(self) -> None:
        return None

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not self.low <= value <= self.high:
            return False
        return self.step is None or math.isclose(
            (value - self.low) / self.step, round((value - self.low) / self.step), abs_tol=1e-8)

    def describe(self) -> str:
        extra = " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"float [{self.low:g}, {self.high:g}]{extra}"


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1
    grid: tuple[int, ...] | None = None
    grid_points: int | None = None
    when: Condition | None = None

    def __post_init__(self) -> None:
        for key in ("low", "high", "step"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(key, f"must be an integer, got {value!r}")
        _check_range(self.low, self.high, self.log, None if self.step == 1 else self.step)
        _check_grid(self)

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import IntDistribution

        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def grid_values(self, default_points: int) -> tuple[Scalar, ...]:
        if self.grid is not None:
            return self.grid
        points = self.grid_points or default_points
        raw = _spaced(self.low, self.high, points, self.log)
        snapped = (self.low + round((v - self.low) / self.step) * self.step for v in raw)
        return tuple(dict.fromkeys(int(min(max(v, self.low), self.high)) for v in snapped))

    def suggest(self, trial: optuna.Trial) -> Scalar:
        return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step)

    def possible_values(self) -> frozenset[Scalar]:
        return frozenset(range(self.low, self.high + 1, self.step))

    def contains(self, value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool)
                and self.low <= value <= self.high and (value - self.low) % self.step == 0)

    def describe(self) -> str:
        extra = " log" if self.log else (f" step {self.step}" if self.step != 1 else "")
        return f"int [{self.low}, {self.high}]{extra}"


@dataclass(frozen=True)
class CategoricalParam:
    name: str
    choices: tuple[Scalar, ...]
    when: Condition | None = None

    def __post_init__(self) -> None:
        if not self.choices:
            raise ParamError("choices", "must list at least one value")
        for choice in self.choices:
            if not isinstance(choice, bool | int | float | str) and choice is not None:
                raise ParamError("choices", f"values must be scalars, got {choice!r}")
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ParamError("choices", f"has duplicate values: {list(self.choices)}")

    def distribution(self) -> BaseDistribution:
        from optuna.distributions import CategoricalDistribution

        return CategoricalDistribution(self.choices)

    def grid_values(self, default_points: int) -> tuple[Scalar, ...]:
        return self.choices

    def suggest(self, trial: optuna.Trial) -> Scalar:
        return trial.suggest_categorical(self.name, self.choices)

    def possible_values(self) -> frozenset[Scalar]:
        return frozenset(self.choices)

    def contains(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)

    def describe(self) -> str:
        return f"categorical {list(self.choices)}"


@dataclass(frozen=True)
class FixedParam:
    """A value that is not searched but still recorded with every trial."""

    name: str
    value: Scalar
    when: Condition | None = None

    def distribution(self) -> None:
        return None

    def grid_values(self, default_points: int) -> tuple[Scalar, ...]:
        return (self.value,)

    def suggest(self, trial: optuna.Trial) -> Scalar:
        return self.value

    def possible_values(self) -> frozenset[Scalar]:
        return frozenset([self.value])

    def contains(self, value: Any) -> bool:
        return bool(value == self.value)

    def describe(self) -> str:
        return f"fixed {self.value!r}"


Param: TypeAlias = FloatParam | IntParam | CategoricalParam | FixedParam


def _check_range(low: float, high: float, log: bool, step: float | None) -> None:
    for key, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ParamError(key, f"must be a finite number, got {value!r}")
    if low > high:
        raise ParamError("low", f"low ({low}) is greater than high ({high})")
    if log and low <= 0:
        raise ParamError("low", f"log scale needs low > 0, got {low}")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int | float) or step <= 0:
            raise ParamError("step", f"must be > 0, got {step!r}")
        if log:
            raise ParamError("step", "cannot be combined with log: true")
        spans = (high - low) / step
        if not math.isclose(spans, round(spans), rel_tol=0.0, abs_tol=1e-8):
            # Optuna would quietly shrink the range to the last whole step.
            raise ParamError("step", f"the range [{low:g}, {high:g}] is not a whole number of "
                             f"steps of {step:g}")


MAX_GRID_POINTS = 1000  # per parameter; the grid multiplies them


def _check_grid(param: FloatParam | IntParam) -> None:
    if param.grid_points is not None and (
        isinstance(param.grid_points, bool)
        or not isinstance(param.grid_points, int)
        or not 1 <= param.grid_points <= MAX_GRID_POINTS
    ):
        raise ParamError("grid_points", f"must be an integer in [1, {MAX_GRID_POINTS}], got "
                         f"{param.grid_points!r}")
    if param.grid is None:
        return
    if not param.grid:
        raise ParamError("grid", "must list at least one value")
    for value in param.grid:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamError("grid", f"values must be numbers, got {value!r}")
        if isinstance(param, IntParam) and not isinstance(value, int):
            raise ParamError("grid", f"values must be integers, got {value!r}")
        if not param.low <= value <= param.high:
            raise ParamError("grid", f"value {value} lies outside [{param.low}, {param.high}]")


def _spaced(low: float, high: float, points: int, log: bool) -> list[float]:
    if points == 1 or low == high:
        return [float(low)]
    if log:
        return [float(v) for v in np.geomspace(low, high, points)]
    return [float(v) for v in np.linspace(low, high, points)]
