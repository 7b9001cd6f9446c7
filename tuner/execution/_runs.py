"""The MLflow side of one study: its parent run (created, or reopened when the study resumes) and
a nested child run per trial, ended with the state its trial ended in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from tuner.execution._trial import TrialOutcome
from tuner.search import (
    ATTR_BEST_RUN,
    ATTR_EXPERIMENT,
    ATTR_PARENT_RUN,
    TRIAL_ENQUEUED,
    LostTrial,
    best_run,
    sampler_name,
)
from tuner.space import Space
from tuner.tracking import Tracker, TrialRun, fail_trial_run

# How a trial's outcome shows as the state of its MLflow run.
_RUN_STATE = {"INTERRUPTED": "KILLED", "LOST": "FAIL"}


class StudyRuns:
    def __init__(self, tracker: Tracker, space: Space, study_name: str, strategy: str,
                 parent: str, study: optuna.Study | None = None):
        """`study`: where the trials that are running are looked up, when the runs that a lost
        writer process left open are ended (a worker writes from a thread: it has none)."""
        self.tracker = tracker
        self.study_name = study_name
        self.strategy = strategy
        self.parent = parent
        self.study = study
        self.objective_keys = [o.key for o in space.objectives]
        self._trial_runs: dict[int, TrialRun] = {}  # this process's trials' runs, by number

    @classmethod
    def open(cls, tracker: Tracker, study: optuna.Study, space: Space, strategy: str, seed: int,
             pruner: str, parent_run_id: str | None = None,
             extra_tags: Mapping[str, str] = {}) -> StudyRuns:
        """Create the study's parent run, or reopen it when the study resumes in the same store;
        the study records which run is its parent."""
        attrs = study.user_attrs
        same_store = attrs.get(ATTR_EXPERIMENT) == tracker.experiment_id
        resume = attrs.get(ATTR_PARENT_RUN) if same_store else None
        tags = {"study": study.study_name, "strategy": strategy,
                "sampler": sampler_name(study.sampler), "pruner": pruner, "seed": str(seed),
                "space_hash": space.hash, "space_name": space.name}
        params: dict[str, Any] = {"strategy": strategy, "seed": seed, "pruner": pruner,
                                  "max_epochs": space.training.max_epochs,
                                  "data": space.data.source}
        if space.multi:
            objectives = ",".join(f"{o.key}:{o.direction}" for o in space.objectives)
            tags.update(objectives=objectives,
                        constraints="; ".join(c.describe() for c in space.constraints))
            params["objectives"] = objectives
        else:
            tags.update(objective=space.objective.key, direction=space.objective.direction)
            params["objective"] = space.objective.key
        tags.update(extra_tags)
        parent = tracker.start_study(study.study_name, tags, params, resume,
                                     parent_run_id=parent_run_id)
        if parent != resume:
            study.set_user_attr(ATTR_PARENT_RUN, parent)
            study.set_user_attr(ATTR_EXPERIMENT, tracker.experiment_id)
        else:  # runs left open by a process that ended before its writer could end them
            tracker.end_orphaned_runs(parent, _running(study))
        return cls(tracker, space, study.study_name, strategy, parent, study)

    def start_trial(self, trial: optuna.Trial, params: Mapping[str, Any]) -> TrialRun:
        tags = {"strategy": self.strategy,
                **({"enqueued": "true"} if trial.user_attrs.get(TRIAL_ENQUEUED) else {})}
        run = self.tracker.start_trial(self.parent, self.study_name, trial.number, params, tags)
        self._trial_runs[trial.number] = run
        return run

    def finish_trial(self, run: TrialRun, outcome: TrialOutcome) -> None:
        tags: dict[str, Any] = {"epochs": outcome.epochs, "best_epoch": outcome.best_epoch,
                                "seed": outcome.seed}
        if outcome.reason:
            tags["fail_reason" if outcome.state in ("FAIL", "LOST") else "reason"] = \
                outcome.reason
        if outcome.values is not None:  # several objectives: one metric each
            metrics = {f"objective_{key}": value for key, value in
                       zip(self.objective_keys, outcome.values, strict=True)}
            metrics.update({k: v for k, v in outcome.metrics.items()
                            if k in ("params", "latency")})
        else:
            metrics = {"objective": outcome.value} if outcome.value is not None else {}
        run.finish(_RUN_STATE.get(outcome.state, outcome.state), tags, metrics)

    def abort_trial(self, run: TrialRun, killed: bool) -> None:
        run.finish("KILLED" if killed else "FAIL",
                   {"reason": "aborted" if killed else "run failed"}, {})

    def end_lost(self, lost: LostTrial) -> None:
        """End the run of a trial whose worker died (reaped by this process)."""
        fail_trial_run(self.tracker, self.study_name, lost.number, None, lost.reason)

    def note_best_run(self, study: optuna.Study, number: int) -> None:
        """Record in the study which run holds trial `number`, its best: `tuner best` then names
        the run without loading MLflow (seconds). A trial of this process's is its writer's to
        name; another's (a worker's, an earlier run's) is looked up in the store."""
        if best_run(study, number) is not None:
            return
        run = self._trial_runs.get(number)
        run_id = self.tracker.trial_run_id(run.ref) if run is not None else None
        if run_id is None:  # another process's trial (or its run's creation failed)
            run_id = self.tracker.trial_run_id_of(self.study_name, number)
        if run_id is not None:
            study.set_user_attr(ATTR_BEST_RUN, {"trial": number, "run": run_id,
                                                "parent": self.parent})

    def end(self, status: str) -> None:
        self.tracker.end_run(self.parent, status)
        if self.tracker.writer_lost and self.study is not None:
            # The trial runs that the lost writer had open: only it knew their ids.
            self.tracker.end_orphaned_runs(self.parent, _running(self.study))


def _running(study: optuna.Study) -> list[int]:
    """The numbers of the study's trials that are running (here or elsewhere)."""
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
