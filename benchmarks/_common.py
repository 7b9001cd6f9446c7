"""Measuring on a noisy shared machine: interleaved A/B repeats, median of per-pair ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Row:
    """One line of the results table."""

    bench: str
    what: str
    value: float
    unit: str  # "x" for ratios, "acc" an accuracy, "pt" a difference of accuracies, or a unit
    target: str = ""
    met: bool | None = None
    detail: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(f"  {row.bench:<10} {row.what:<62} {_fmt(row.value, row.unit):>12}"
              f"  {row.target}{'' if row.met is None else (' ok' if row.met else ' MISSED')}",
              flush=True)

    def markdown(self) -> str:
        lines = ["| bench | what | measured | target | met | detail |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for r in self.rows:
            met = "" if r.met is None else ("yes" if r.met else "no")
            lines.append(f"| {r.bench} | {r.what} | {_fmt(r.value, r.unit)} | {r.target} | {met} "
                         f"| {r.detail} |")
        return "\n".join(lines)


def _fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "acc":
        return f"{value:.4f}"
    if unit == "pt":  # a difference of two shares, in percentage points
        return f"{100 * value:+.2f} pt"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value:.3g} {unit}"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ab_ratio(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float, float]:
    """Median over interleaved pairs of time(a) / time(b); also the median times of a and b.

    Interleaving (a, b, b, a, a, b, ...) spreads the machine's slow moments over both sides.
    """
    ratios, times_a, times_b = [], [], []
    for i in range(repeats):
        if i % 2 == 0:
            ta, tb = timed(a), timed(b)
        else:
            tb, ta = timed(b), timed(a)
        ratios.append(ta / tb)
        times_a.append(ta)
        times_b.append(tb)
    return statistics.median(ratios), statistics.median(times_a), statistics.median(times_b)
