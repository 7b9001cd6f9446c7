"""A comparison's records: its plan (which study runs which strategy, the grid's resolution),
and reading its studies back into tables: a row per trial, per study, per strategy."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from tuner.analysis._plan import GridPlan, StudyPlan
from tuner.analysis._results import clean, ranked, reach, summarise, trials_frame
from tuner.search import ATTR_PARENT_RUN
from tuner.space import Space
from tuner.tracking import Tracker, trial_run_tags

TOLERANCE = 0.005  # default target: the best value any study reached, 0.5% (relative) worse


@dataclass(frozen=True)
class Comparison:
    name: str
    experiment_id: str
    run_id: str
    direction: str
    objective: str
    test_metric: str
    target: float | None
    grid: GridPlan | None
    out: Path
    settings: dict[str, Any]  # the comparison run's params, strategies and repeats
    strategies: dict[str, dict[str, Any]]
    studies: pd.DataFrame = field(repr=False)
    trials: pd.DataFrame = field(repr=False)
    interrupted: bool = False
    notes: tuple[str, ...] = ()  # what the reader must know, e.g. strategies that ran the same

    def to_dict(self) -> dict[str, Any]:
        return clean({"comparison": self.name, "experiment_id": self.experiment_id,
                       "mlflow_run_id": self.run_id, "objective": self.objective,
                       "direction": self.direction, "target": self.target,
                       "grid": self.grid.describe() if self.grid else None, "out": str(self.out),
                       "interrupted": self.interrupted, "settings": self.settings,
                       "notes": list(self.notes), "strategies": self.strategies})


def build_comparison(space: Space, name: str, run_id: str, grid: GridPlan | None,
                     plans: list[StudyPlan], storage: Any, tracker: Tracker,
                     settings: dict[str, Any], strategies: list[str], target: float | None,
                     out: Path, interrupted: bool, notes: tuple[str, ...] = ()) -> Comparison:
    """Read every study of a comparison back (Optuna storage, MLflow runs) into its tables:
    a row per trial, a row per study (reach of the target), a summary per strategy."""
    direction = space.objective.direction
    test_key = f"test_{space.objective.metric}"
    frames, rows = [], []
    for plan in plans:
        if not any(s.study_name == plan.name for s in storage.get_all_studies()):
            continue  # not started: an interrupted comparison
        study = optuna.load_study(study_name=plan.name, storage=storage)
        parent = study.user_attrs.get(ATTR_PARENT_RUN)
        tags_of = trial_run_tags(tracker, plan.name)
        frame = trials_frame(name, plan, study.get_trials(deepcopy=False), direction, tags_of)
        metrics = tracker.run_data(parent)[1] if parent else {}
        frames.append(frame)
        rows.append({"strategy": plan.strategy, "repeat": plan.repeat, "study": plan.name,
                     "seed": plan.seed, "parent_run_id": parent, "trials": len(frame),
                     "complete": int((frame.state == "COMPLETE").sum()),
                     "pruned": int((frame.state == "PRUNED").sum()),
                     "failed": int((frame.state == "FAIL").sum()),
                     "best_value": frame.best_so_far.iloc[-1] if len(frame) else math.nan,
                     test_key: metrics.get(test_key, math.nan),
                     "epochs": frame.epochs.sum(min_count=1) if len(frame) else math.nan,
                     "wall_s": frame.elapsed_s.max() if len(frame) else math.nan})
    trials = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    studies = pd.DataFrame(rows)
    if target is None and len(studies) and studies.best_value.notna().any():
        best = studies.best_value.max() if direction == "maximize" else studies.best_value.min()
        target = float(best - TOLERANCE * abs(best) if direction == "maximize"
                       else best + TOLERANCE * abs(best))
    if len(studies):
        reached = [reach(trials[trials.study == s], target, direction) for s in studies.study]
        studies["trials_to_target"] = [r[0] for r in reached]
        studies["time_to_target_s"] = [r[1] for r in reached]
        studies["pruned_share"] = studies.pruned / studies.trials.where(studies.trials > 0)
    summary = ranked(summarise(studies, strategies, test_key), direction)
    comparison = Comparison(name, tracker.experiment_id, run_id, direction, space.objective.key,
                            test_key, target, grid, out, settings, summary, studies, trials,
                            interrupted, notes)
    return comparison
