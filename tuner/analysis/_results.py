"""A comparison's results as tables: one tidy row per trial, per-study reach of the target,
and the per-strategy summary (means and spreads over repeats)."""

from __future__ import annotations

import bisect
import datetime
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from tuner.search import TRIAL_PARAMS, uncounted
from tuner.space import is_better

if TYPE_CHECKING:
    from tuner.analysis._plan import StudyPlan


def trials_frame(comparison: str, plan: StudyPlan, trials: list[FrozenTrial], direction: str,
                 run_tags: Mapping[int, Mapping[str, str]]) -> pd.DataFrame:
    """One row per counted trial (re-queued interruptions and queued ones are left out).

    `elapsed_s`: the time the study had trials running when this trial ended. Trials that ran
    together (a pack, workers) count once, and pauses between resumes not at all: the sum of
    trial durations would count a pack of 16 trials 16 times. `best_so_far` is the best in trial
    order, `best_by_time` the best among the trials ended by then."""
    counted = [t for t in sorted(trials, key=lambda t: t.number)
               if t.state.is_finished() and not uncounted(t)]
    busy = _BusyTime([(t.datetime_start, t.datetime_complete) for t in counted
                      if t.datetime_start and t.datetime_complete])
    rows: list[dict[str, Any]] = []
    best = math.nan
    for t in counted:
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else 0.0
        if t.state == TrialState.COMPLETE and t.value is not None and is_better(
                direction, t.value, None if math.isnan(best) else best):
            best = t.value
        epochs = run_tags.get(t.number, {}).get("epochs")
        row = {"comparison": comparison, "strategy": plan.strategy, "repeat": plan.repeat,
               "study": plan.name, "study_seed": plan.seed, "trial": len(rows) + 1,
               "number": t.number, "state": t.state.name, "value": t.value, "best_so_far": best,
               "duration_s": round(duration, 4),
               "elapsed_s": round(busy.until(t.datetime_complete), 4),
               "epochs": int(epochs) if epochs else len(t.intermediate_values) or math.nan,
               "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete}
        row.update({f"param_{k}": v for k, v in t.user_attrs.get(TRIAL_PARAMS, t.params).items()})
        rows.append(row)
    best = math.nan
    for row in sorted(rows, key=lambda r: r["elapsed_s"]):
        value = row["value"]
        if row["state"] == "COMPLETE" and isinstance(value, float) and is_better(
                direction, value, None if math.isnan(best) else best):
            best = value
        row["best_by_time"] = best
    # A study interrupted in its first trial has none; its columns still exist.
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=[
        "comparison", "strategy", "repeat", "study", "study_seed", "trial", "number", "state",
        "value", "best_so_far", "duration_s", "elapsed_s", "epochs", "best_by_time"])


class _BusyTime:
    """Seconds during which at least one of the intervals ran, up to a moment."""

    def __init__(self, intervals: list[tuple[datetime.datetime, datetime.datetime]]):
        self.spans: list[tuple[datetime.datetime, datetime.datetime]] = []
        for start, end in sorted(intervals):
            if self.spans and start <= self.spans[-1][1]:
                self.spans[-1] = (self.spans[-1][0], max(self.spans[-1][1], end))
            else:
                self.spans.append((start, end))
        self.starts = [start for start, _ in self.spans]
        self.before = [0.0]  # busy seconds before each span
        for start, end in self.spans:
            self.before.append(self.before[-1] + (end - start).total_seconds())

    def until(self, moment: datetime.datetime | None) -> float:
        if moment is None:
            return 0.0
        i = bisect.bisect_right(self.starts, moment)
        if i == 0:
            return 0.0
        start, end = self.spans[i - 1]
        return self.before[i - 1] + (min(moment, end) - start).total_seconds()


def reach(frame: pd.DataFrame, target: float | None, direction: str) -> tuple[float, float]:
    """(trials, seconds) until the target was first reached: in trial order, and the study's
    busy time until the first trial that reached it ended; NaN if none did."""
    if target is None or frame.empty:
        return math.nan, math.nan
    hit = frame.best_so_far >= target if direction == "maximize" else frame.best_so_far <= target
    if not hit.any():
        return math.nan, math.nan
    done = frame.best_by_time >= target if direction == "maximize" \
        else frame.best_by_time <= target
    return float(frame[hit].iloc[0].trial), float(frame.elapsed_s[done].min())


def summarise(studies: pd.DataFrame, strategies: list[str], test_key: str) -> dict[str, dict[str, Any]]:
    """Per strategy: means and spreads over its repeats."""
    out: dict[str, dict[str, Any]] = {}
    for strategy in strategies:
        rows = studies[studies.strategy == strategy] if len(studies) else studies
        if rows.empty:
            continue
        reached = rows.trials_to_target.notna()
        out[strategy] = clean({
            "repeats": len(rows), "trials": float(rows.trials.mean()),
            "best_mean": rows.best_value.mean(), "best_std": rows.best_value.std(),
            "test_mean": rows[test_key].mean(), "test_std": rows[test_key].std(),
            "reached": int(reached.sum()),
            "trials_to_target": rows.trials_to_target[reached].mean(),
            "time_to_target_s": rows.time_to_target_s[reached].mean(),
            "time_to_target_std": rows.time_to_target_s[reached].std(),
            "epochs": rows.epochs.sum(), "pruned_share": rows.pruned.sum() / max(rows.trials.sum(), 1),
            "wall_s": rows.wall_s.mean(),
        })
    return out


def ranked(summary: Mapping[str, Mapping[str, Any]], direction: str) -> dict[str, dict[str, Any]]:
    """The strategies best first, each with its `rank`: by the share of repeats that reached the
    target, then the trials they took, then the best value (mean over repeats). Wall time is left
    out: on a shared machine it measures the load as much as the strategy. Strategies equal on all
    three share a rank (1, 1, 3): e.g. random, tpe and gp within their shared start-up trials."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(item: tuple[str, Mapping[str, Any]]) -> tuple[float, float, float]:
        s = item[1]
        share = s["reached"] / s["repeats"] if s.get("repeats") else 0.0
        trials = s["trials_to_target"] if s.get("trials_to_target") is not None else math.inf
        best = sign * s["best_mean"] if s.get("best_mean") is not None else math.inf
        return -share, trials, best

    order = sorted(summary.items(), key=key)
    out: dict[str, dict[str, Any]] = {}
    for position, item in enumerate(order):
        earlier = order[position - 1] if position else None
        tied = earlier is not None and key(earlier) == key(item)
        rank = out[earlier[0]]["rank"] if tied and earlier is not None else position + 1
        out[item[0]] = {"rank": rank, **item[1]}
    return out


def comparison_metrics(summary: Mapping[str, Mapping[str, Any]],
                       target: float | None) -> dict[str, float]:
    """The comparison run's metrics: `target` and `STRATEGY.key` (not `STRATEGY/key`: the MLflow
    UI makes a chart section of each `/` prefix, empty ones included, in every chart view of
    the experiment)."""
    metrics = {} if target is None else {"target": target}
    for strategy, values in summary.items():
        metrics.update({f"{strategy}.{k}": float(v) for k, v in values.items()
                        if isinstance(v, int | float) and not isinstance(v, bool)})
    return metrics


def clean(value: Any) -> Any:
    """NaN -> None and numpy scalars -> Python ones, so JSON and MLflow accept the values."""
    if isinstance(value, Mapping):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
