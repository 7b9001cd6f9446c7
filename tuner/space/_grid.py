"""The grid of a parameter space, counted without being built.

Six numeric parameters at 32 points each make 10^9 grid points: building them as a list of dicts
fills any machine's memory. `Grid` counts the points and decodes point number k directly, so a
grid is only enumerated when it is small enough to run whole (`GRID_LIMIT`), and a large one can
still be sampled (`--trials N`, a comparison's budget).

Points are numbered in the order in which `ParameterSpace.grid()` lists them: lexicographic,
earlier parameters first. Conditions (`when:`) make the grid a tree; only the values of parents
that a later parameter's condition names matter for what follows, so the counting keeps one
entry per distinct combination of those values (a "state"), which stays small in real spaces.
Each step's work is at most the number of distinct grid prefixes, so work beyond `GRID_LIMIT`
proves the grid is larger than that, and the counting stops there (`GridTooComplex`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

from tuner.space._params import Condition, Param, Scalar

GRID_LIMIT = 100_000  # points a grid study may queue (each becomes a trial)

State = tuple[tuple[str, Any], ...]
# One way through a step: the values that lead to the same state (in order), that state, and
# whether the parameter is active there (inactive: no value, one way through).
Branch = tuple[tuple[Scalar, ...], State, bool]


class GridTooComplex(Exception):
    """The conditions have too many combinations to count: the grid exceeds `GRID_LIMIT`."""


class Grid:
    def __init__(self, params: Sequence[Param], grid_points: int):
        self.params = tuple(params)
        self.values = [tuple(p.grid_values(grid_points)) for p in self.params]
        n = len(self.params)
        # needed[i]: the parents named by the conditions of parameters i, i+1, ...
        self._needed: list[frozenset[str]] = [frozenset()] * (n + 1)
        for i in range(n - 1, -1, -1):
            when = self.params[i].when
            self._needed[i] = self._needed[i + 1] | ({when.parent} if when else set())
        self._branches: list[dict[State, list[Branch]]] = []
        states: set[State] = {()}
        for i in range(n):
            ways: dict[State, list[Branch]] = {}
            work = 0
            for state in states:
                ways[state] = self._ways(i, state)
                work += len(ways[state])
                if work > GRID_LIMIT:
                    raise GridTooComplex
            self._branches.append(ways)
            states = {after for w in ways.values() for _, after, _ in w}
        # below[i][state]: the points that complete a prefix in `state` before parameter i.
        self._below: list[dict[State, int]] = [{} for _ in range(n)] + [dict.fromkeys(states, 1)]
        for i in range(n - 1, -1, -1):
            self._below[i] = {
                state: sum(max(len(values), 1) * self._below[i + 1][after]
                           for values, after, _ in ways)
                for state, ways in self._branches[i].items()}
        self.size: int = self._below[0][()]

    def _ways(self, i: int, state: State) -> list[Branch]:
        param = self.params[i]
        keep = self._needed[i + 1]
        dropped = self._needed[i] - keep  # parents no later condition names
        kept = tuple(kv for kv in state if kv[0] not in dropped) if dropped else state
        if param.when is not None and not _holds(param.when, state):
            return [((), kept, False)]
        if param.name not in keep:  # no later condition looks at it: every value, one state
            return [(self.values[i], kept, True)]
        ways: list[Branch] = []
        at = bisect.bisect_left(kept, param.name, key=_name)  # a state is sorted by name
        for value in self.values[i]:
            key = (*kept[:at], (param.name, value), *kept[at:])
            if ways and ways[-1][1] == key:  # values equal as keys (1 and True) stay together
                ways[-1] = ((*ways[-1][0], value), key, True)
            else:
                ways.append(((value,), key, True))
        return ways

    def point(self, index: int) -> dict[str, Scalar]:
        """Grid point number `index` (0 <= index < size): `ParameterSpace.grid()[index]`."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        point: dict[str, Scalar] = {}
        state: State = ()
        for i, param in enumerate(self.params):
            for values, after, active in self._branches[i][state]:
                below = self._below[i + 1][after]
                covered = max(len(values), 1) * below
                if index < covered:
                    if active:
                        point[param.name] = values[index // below]
                    index %= below
                    state = after
                    break
                index -= covered
        return point

    def __iter__(self) -> Iterator[dict[str, Scalar]]:
        return (self.point(k) for k in range(self.size))


def _name(item: tuple[str, Any]) -> str:
    return item[0]


def _holds(when: Condition, state: State) -> bool:
    """`when.holds(dict(state))`, without building the dict (this runs once per state)."""
    at = bisect.bisect_left(state, when.parent, key=_name)
    return at < len(state) and state[at][0] == when.parent and state[at][1] in when.values
