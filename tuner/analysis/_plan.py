"""The plan of a comparison: which study runs which strategy in which repeat, and the grid's
resolution that gives grid the same budget as the others."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GridPlan:
    grid_points: int
    size: int
    trials: int
    space_grid_points: int

    def describe(self) -> str:
        finer = (f" (finer than the space's {self.space_grid_points}, to hold the budget)"
                 if self.grid_points != self.space_grid_points else "")
        runs = ("each repeat runs the whole grid" if self.trials == self.size
                else f"each repeat runs a seeded random {self.trials} of them")
        return f"grid: {self.size} points at grid_points={self.grid_points}{finer}; {runs}"


@dataclass(frozen=True)
class StudyPlan:
    strategy: str
    repeat: int
    seed: int
    name: str
    trials: int
