"""The parameter space: parsing a `params:` block, sampling a trial, enumerating the grid."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from tuner.space._hyperparameters import HYPERPARAMETERS, check_value
from tuner.space._params import (
    CategoricalParam,
    Condition,
    FixedParam,
    FloatParam,
    IntParam,
    Param,
    ParamError,
    Scalar,
)
from tuner.space._yaml import Document

_COMMON_KEYS = {"type", "when", "per_layer"}
_KEYS = {
    "float": _COMMON_KEYS | {"low", "high", "log", "step", "grid", "grid_points"},
    "int": _COMMON_KEYS | {"low", "high", "log", "step", "grid", "grid_points"},
    "categorical": _COMMON_KEYS | {"choices"},
    "fixed": _COMMON_KEYS | {"value"},
}


@dataclass(frozen=True)
class ParameterSpace:
    """Parameters in dependency order (a parameter comes after the one its condition names)."""

    params: tuple[Param, ...]
    grid_points: int = 3

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def suggest(self, trial: optuna.Trial) -> dict[str, Scalar]:
        """Sample the active parameters of one trial (conditions decide which are active)."""
        assigned: dict[str, Scalar] = {}
        for param in self.params:
            if param.when is None or param.when.holds(assigned):
                assigned[param.name] = param.suggest(trial)
        return assigned

    def distributions(self) -> dict[str, BaseDistribution]:
        out = {}
        for param in self.params:
            dist = param.distribution()
            if dist is not None:
                out[param.name] = dist
        return out

    def grid(self) -> list[dict[str, Scalar]]:
        """Every distinct assignment of grid values to the active parameters."""
        points: list[dict[str, Scalar]] = [{}]
        for param in self.params:
            values = param.grid_values(self.grid_points)
            grown: list[dict[str, Scalar]] = []
            for point in points:
                if param.when is None or param.when.holds(point):
                    grown.extend({**point, param.name: value} for value in values)
                else:
                    grown.append(point)
            points = grown
        return points

    def grid_size(self) -> int:
        return len(self.grid())


def parse_parameters(doc: Document, raw: Any, grid_points: int,
                     known: bool = True) -> ParameterSpace:
    """`known=False` (a custom trainer's space): any parameter name, no MLP value checks."""
    path = ("params",)
    if not isinstance(raw, Mapping) or not raw:
        raise doc.error(path, "must be a mapping of parameter name to definition")
    definitions = dict(raw)
    for name in definitions:
        if known and name not in HYPERPARAMETERS:
            raise doc.error((*path, name), f"unknown parameter {name!r}; known: "
                            f"{', '.join(HYPERPARAMETERS)}")
    parsed: dict[str, Param] = {}
    # Conditions refer to parents; parse parents first, whatever the file order.
    for name in _dependency_order(doc, definitions):
        spec = definitions[name]
        for param in _parse_one(doc, (*path, name), name, spec, parsed, known):
            parsed[param.name] = param
    return ParameterSpace(tuple(parsed.values()), grid_points)


def _dependency_order(doc: Document, definitions: Mapping[str, Any]) -> list[str]:
    parents: dict[str, list[str]] = {}
    for name, spec in definitions.items():
        parents[name] = []
        if not isinstance(spec, Mapping):
            continue
        when = spec.get("when")
        targets = [("when", str(next(iter(when))))] if isinstance(when, Mapping) and when else []
        if isinstance(spec.get("per_layer"), str):
            targets.append(("per_layer", spec["per_layer"]))
        for key, target in targets:
            if target not in definitions:
                raise doc.error(("params", name, key),
                                f"condition on parameter {target!r}, which does not exist")
            parents[name].append(target)
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise doc.error(("params", name, "when"),
                            f"circular condition: {' -> '.join((*chain, name))}")
        state[name] = 1
        for parent in parents[name]:
            visit(parent, (*chain, name))
        state[name] = 2
        order.append(name)

    for name in definitions:
        visit(name, ())
    return order


def _parse_one(
    doc: Document, path: tuple[str, ...], name: str, spec: Any, parsed: Mapping[str, Param],
    known: bool = True,
) -> list[Param]:
    if not isinstance(spec, Mapping):
        spec = {"type": "fixed", "value": spec}
    kind = spec.get("type", "fixed" if "value" in spec else None)
    if kind not in _KEYS:
        raise doc.error((*path, "type"), f"type must be one of {sorted(_KEYS)}, got {kind!r}")
    for key in spec:
        if key not in _KEYS[kind]:
            raise doc.error((*path, key), f"unknown key {key!r} for a {kind} parameter; "
                            f"allowed: {', '.join(sorted(_KEYS[kind]))}")
    when = _parse_condition(doc, path, spec.get("when"), parsed)
    layer_parent = spec.get("per_layer")
    names = [name]
    conditions: list[Condition | None] = [when]
    if layer_parent is not None:
        if name != "units":
            raise doc.error((*path, "per_layer"), "only 'units' can be given per layer")
        depth = parsed.get(layer_parent) if isinstance(layer_parent, str) else None
        if depth is None or depth.possible_values() is None:
            raise doc.error((*path, "per_layer"),
                            f"must name an int parameter, got {layer_parent!r}")
        depths = depth.possible_values() or frozenset()
        max_depth = max(int(d) for d in depths if isinstance(d, int | float))
        names = [f"{name}_{i}" for i in range(max_depth)]
        conditions = [
            Condition(layer_parent, frozenset(d for d in depths if isinstance(d, int) and d > i))
            for i in range(max_depth)
        ]
    try:
        params = [_build(kind, n, spec, c) for n, c in zip(names, conditions, strict=True)]
    except ParamError as exc:
        raise doc.error((*path, exc.key), str(exc)) from None
    except TypeError as exc:
        raise doc.error(path, f"invalid definition: {exc}") from None
    for key, values in _values_to_check(params[0], spec) if known else ():
        for value in values:
            problem = check_value(name, value)
            if problem is not None:
                raise doc.error((*path, key), problem)
    return params


def _build(kind: str, name: str, spec: Mapping[str, Any], when: Condition | None) -> Param:
    grid = spec.get("grid")
    if grid is not None and not isinstance(grid, list):
        raise ParamError("grid", f"must be a list of values, got {grid!r}")
    for flag in ("log",):
        if flag in spec and not isinstance(spec[flag], bool):
            raise ParamError(flag, f"must be true or false, got {spec[flag]!r}")
    for key in ("low", "high") if kind in ("float", "int") else ():
        if key not in spec:
            raise ParamError(key, f"is required for a {kind} parameter")
    if kind == "float":
        return FloatParam(name, spec["low"], spec["high"], log=spec.get("log", False),
                          step=spec.get("step"), grid=tuple(grid) if grid is not None else None,
                          grid_points=spec.get("grid_points"), when=when)
    if kind == "int":
        return IntParam(name, spec["low"], spec["high"], log=spec.get("log", False),
                        step=spec.get("step", 1), grid=tuple(grid) if grid is not None else None,
                        grid_points=spec.get("grid_points"), when=when)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list):
            raise ParamError("choices", f"must be a list of values, got {choices!r}")
        return CategoricalParam(name, tuple(choices), when=when)
    if "value" not in spec:
        raise ParamError("value", "is required for a fixed parameter")
    if not isinstance(spec["value"], bool | int | float | str):
        raise ParamError("value", f"a fixed value must be a scalar, got {spec['value']!r}")
    return FixedParam(name, spec["value"], when=when)


def _values_to_check(param: Param, spec: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    if isinstance(param, CategoricalParam):
        return [("choices", list(param.choices))]
    if isinstance(param, FixedParam):
        return [("value", [param.value])]
    return [("low", [param.low]), ("high", [param.high])] + (
        [("grid", list(param.grid))] if param.grid else []
    )


def _parse_condition(
    doc: Document, path: tuple[str, ...], raw: Any, parsed: Mapping[str, Param]
) -> Condition | None:
    if raw is None:
        return None
    where = (*path, "when")
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise doc.error(where, "must be a mapping with one entry, e.g. {optimizer: sgd}")
    parent, wanted = next(iter(raw.items()))
    if parent not in parsed:
        raise doc.error(where, f"condition on parameter {parent!r}, which does not exist")
    values = wanted if isinstance(wanted, list) else [wanted]
    possible = parsed[parent].possible_values()
    if possible is None:
        raise doc.error(where, f"cannot condition on float parameter {parent!r}")
    for value in values:
        if value not in possible:
            raise doc.error(where, f"{parent} never takes the value {value!r}; "
                            f"possible: {sorted(possible, key=repr)}")
    return Condition(parent, frozenset(values))
