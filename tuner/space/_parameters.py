"""The parameter space: parsing a `params:` block, sampling a trial, enumerating the grid."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuner.errors import SpaceError
from tuner.space._grid import GRID_LIMIT, Grid, GridTooComplex
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

if TYPE_CHECKING:  # Optuna loads with the study, not with the space file (`tuner validate`)
    import optuna
    from optuna.distributions import BaseDistribution

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
        """Every distinct assignment of grid values to the active parameters; refused (one
        line, with the size) above `GRID_LIMIT` points, before anything is built."""
        size = self.grid_size()
        if size is None or size > GRID_LIMIT:
            raise GridTooLarge(size)
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

    def grid_size(self) -> int | None:
        """The number of grid points, counted without building them; None when there are too
        many combinations of conditions to count (then there are more than `GRID_LIMIT`)."""
        indexed = self.indexed_grid()
        return None if indexed is None else indexed.size

    def grid_target(self, trials: int | None, file: str = "<space>") -> int:
        """The points a grid study with `trials` (None: the whole grid) runs. Refused with one
        line (a SpaceError with the size) before any study exists when that is the whole of a
        grid over `GRID_LIMIT` points; a larger grid is sampled lazily, never built."""
        size = self.grid_size()
        target = size if trials is None or size is None else min(trials, size)
        if size is None or target is None or target > GRID_LIMIT:
            raise SpaceError(str(GridTooLarge(size)), file=file)
        return target

    def indexed_grid(self) -> Grid | None:
        """The grid as a numbered sequence (`point(k)`), for sampling a large grid lazily."""
        try:
            return Grid(self.params, self.grid_points)
        except GridTooComplex:
            return None


class GridTooLarge(ValueError):
    """A grid with more points than a grid study may run whole (`size` None: uncountable)."""

    def __init__(self, size: int | None):
        self.size = size
        shown = f"more than {GRID_LIMIT:,}" if size is None else f"{size:,}"
        super().__init__(f"the grid has {shown} points; a grid study runs at most {GRID_LIMIT:,}: "
                         "lower study.grid_points, list `grid:` values, fix parameters, or pass "
                         f"--trials N (N <= {GRID_LIMIT:,}) to run a seeded random N of them")


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
    if not isinstance(kind, str) or kind not in _KEYS:
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
        names, conditions = _per_layer(doc, path, name, layer_parent, when, parsed)
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


PER_LAYER_LIMIT = 64  # layers a `per_layer` parameter may expand to (the MLP allows 16)


def _per_layer(doc: Document, path: tuple[str, ...], name: str, parent: Any,
               when: Condition | None, parsed: Mapping[str, Param]
               ) -> tuple[list[str], list[Condition | None]]:
    """`units: {per_layer: n_layers}`: one parameter per possible layer, `units_i` present when
    the network has more than i layers."""
    where = (*path, "per_layer")
    if name != "units":
        raise doc.error(where, "only 'units' can be given per layer")
    if when is not None:
        # Each units_i already has a condition (on the layer count); a second one cannot be
        # expressed, and dropping it silently would search parameters that do not exist.
        raise doc.error((*path, "when"), "cannot be combined with per_layer: put the condition "
                        "on the layer-count parameter instead")
    depth = parsed.get(parent) if isinstance(parent, str) else None
    if isinstance(depth, IntParam):
        if depth.high > PER_LAYER_LIMIT:
            raise doc.error(where, f"{parent} goes up to {depth.high} layers; per_layer allows "
                            f"at most {PER_LAYER_LIMIT}")
        depths: set[int] = set(range(depth.low, depth.high + 1, depth.step))
    else:
        values = depth.possible_values() if depth is not None else None
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise doc.error(where, f"must name an int parameter (a layer count), got {parent!r}")
        depths = {int(v) for v in values if isinstance(v, int)}
    if min(depths) < 1 or max(depths) > PER_LAYER_LIMIT:
        raise doc.error(where, f"the layer counts of {parent} must lie in [1, {PER_LAYER_LIMIT}],"
                        f" got {sorted(depths)[0] if min(depths) < 1 else max(depths)}")
    layers = max(depths)
    return ([f"{name}_{i}" for i in range(layers)],
            [Condition(parent, frozenset(d for d in depths if d > i)) for i in range(layers)])


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
    param = parsed[parent]
    if isinstance(param, FloatParam):
        raise doc.error(where, f"cannot condition on float parameter {parent!r}")
    for value in values:
        if not isinstance(value, bool | int | float | str) and value is not None:
            raise doc.error(where, f"condition values must be scalars, got {value!r}")
        # An int range is checked by arithmetic: listing 1..10^9 would not fit in memory.
        known = param.contains(value) if isinstance(param, IntParam) \
            else value in (param.possible_values() or ())
        if not known:
            possible = param.describe() if isinstance(param, IntParam) \
                else sorted(param.possible_values() or (), key=repr)
            raise doc.error(where, f"{parent} never takes the value {value!r}; "
                            f"possible: {possible}")
    return Condition(parent, frozenset(values))
