"""One declaration gives both the sampler's distributions and the grid's values."""

from __future__ import annotations

import textwrap

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tuner import parse_space


def space(params: str, grid_points: int = 3):
    body = textwrap.indent(textwrap.dedent(params), "  ")
    return parse_space(f"study: {{grid_points: {grid_points}}}\nparams:\n{body}\n")


def values(s, name):
    return next(p for p in s.params if p.name == name).grid_values(s.params.grid_points)


def test_evenly_spaced_points_include_both_endpoints() -> None:
    s = space("dropout: {type: float, low: 0.0, high: 0.5}", grid_points=3)
    assert values(s, "dropout") == (0.0, 0.25, 0.5)


def test_log_points_are_geometric() -> None:
    s = space("lr: {type: float, low: 1e-4, high: 1e-2, log: true}", grid_points=3)
    assert values(s, "lr") == pytest.approx((1e-4, 1e-3, 1e-2))


def test_int_points_respect_step_and_stay_distinct() -> None:
    s = space("units: {type: int, low: 16, high: 64, step: 16, grid_points: 10}")
    assert values(s, "units") == (16, 32, 48, 64)


def test_explicit_grid_wins_over_points() -> None:
    s = space("lr: {type: float, low: 1e-4, high: 1e-1, log: true, grid: [1e-3, 1e-2]}")
    assert values(s, "lr") == (1e-3, 1e-2)


def test_distributions_match_the_same_bounds() -> None:
    s = space("""\
        lr: {type: float, low: 1e-4, high: 1e-1, log: true}
        units: {type: int, low: 8, high: 64, step: 8}
        activation: {type: categorical, choices: [relu, tanh]}
        batch_size: 64
        """)
    dists = s.params.distributions()
    assert dists["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["units"] == IntDistribution(8, 64, step=8)
    assert dists["activation"] == CategoricalDistribution(("relu", "tanh"))
    assert "batch_size" not in dists  # fixed: recorded, not searched
    for point in s.params.grid():
        assert point["batch_size"] == 64
        by_name = {p.name: p for p in s.params}
        for name, dist in dists.items():
            assert by_name[name].contains(point[name]), (name, point[name], dist)


def test_conditional_parameters_do_not_multiply_the_grid() -> None:
    s = space("""\
        optimizer: {type: categorical, choices: [adam, sgd]}
        momentum: {type: float, low: 0.0, high: 0.9, when: {optimizer: sgd}, grid: [0.5, 0.9]}
        nesterov: {type: categorical, choices: [true, false], when: {optimizer: sgd}}
        """)
    grid = s.params.grid()
    # adam: 1 point; sgd: 2 momenta x 2 nesterov = 4 points.
    assert len(grid) == 5
    assert {"optimizer": "adam"} in grid
    assert all(("momentum" in p) == (p["optimizer"] == "sgd") for p in grid)


def test_per_layer_widths_exist_only_for_present_layers() -> None:
    s = space("""\
        n_layers: {type: int, low: 1, high: 3}
        units: {type: int, low: 16, high: 64, per_layer: n_layers, grid: [16, 64]}
        """)
    grid = s.params.grid()
    # 1 layer: 2 widths; 2 layers: 4; 3 layers: 8.
    assert len(grid) == 2 + 4 + 8
    for point in grid:
        assert sorted(k for k in point if k.startswith("units_")) == \
            [f"units_{i}" for i in range(point["n_layers"])]
    assert len({tuple(sorted(p.items())) for p in grid}) == len(grid)
