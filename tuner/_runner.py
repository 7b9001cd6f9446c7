"""`run_study`: the loop that claims trials, runs them, records outcomes, and ends cleanly."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from tuner._data import Dataset, load_dataset
from tuner._errors import TunerError
from tuner._hparams import TrialConfig
from tuner._model import ScoringModel
from tuner._objective import TrialOutcome, run_trial
from tuner._progress import StudyProgress
from tuner._spec import STRATEGIES, PrunerSpec, Space
from tuner._storage import describe, open_storage
from tuner._strategies import make_pruner, make_sampler
from tuner._study import (
    ATTR_EXPERIMENT,
    ATTR_PARENT_RUN,
    TRIAL_GRID,
    TRIAL_INTERRUPTED,
    TRIAL_PARAMS,
    TRIAL_REASON,
    TRIAL_SEED,
    StudyHandle,
    claim_waiting,
    counted_trials,
    default_study_name,
    enqueue_grid,
    open_study,
)
from tuner._tracking import Tracker
from tuner._training import Callback, evaluate, fit


@dataclass(frozen=True)
class RunOptions:
    """How to run a study; None means "the space file's default"."""

    strategy: str | None = None
    trials: int | None = None
    seed: int | None = None
    pruner: str | None = None
    storage: str | None = None
    study_name: str | None = None
    experiment: str | None = None
    tracking_uri: str | None = None
    tracking: bool = True
    log_model: bool = True
    threads: int | None = None
    progress: bool = True
    views: bool = True  # Optuna's plots as artifacts of the parent run
    # A comparison nests each study's parent run under its own run, with extra tags.
    parent_run_id: str | None = None
    extra_tags: tuple[tuple[str, str], ...] = ()
    # Called in this process after each trial is recorded (e.g. a comparison's live view).
    on_trial: Callable[[TrialOutcome], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StudyResult:
    study: str
    strategy: str
    storage: str
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    n_complete: int
    n_pruned: int
    n_failed: int
    wall_s: float
    trials_s: float
    tracking_s: float
    test_metrics: dict[str, float]
    mlflow_experiment_id: str | None
    mlflow_parent_run_id: str | None
    tracking_uri: str | None
    model_uri: str | None
    interrupted: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_study(space: Space, options: RunOptions | None = None) -> StudyResult:
    """Create or resume the study described by `space` and run it to its trial budget."""
    options = options or RunOptions()
    started = time.perf_counter()
    strategy = options.strategy or space.study.strategy
    if strategy not in STRATEGIES:
        raise TunerError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    seed = space.study.seed if options.seed is None else options.seed
    pruner_spec = space.study.pruner
    if options.pruner is not None:
        pruner_spec = PrunerSpec(options.pruner, pruner_spec.startup_trials,
                                 pruner_spec.warmup_epochs, pruner_spec.min_resource,
                                 pruner_spec.reduction_factor)
    torch.set_num_threads(options.threads or max(1, (os.cpu_count() or 1)))
    data = load_dataset(space.data)  # bad data fails here, before any study or run exists

    name = options.study_name or default_study_name(space, strategy, seed)
    storage = open_storage(options.storage)
    handle = open_study(storage, name, space, strategy, seed, make_sampler(strategy, seed),
                        make_pruner(pruner_spec, space.training.max_epochs))
    notes: list[str] = []
    if strategy == "grid":
        grid = space.params.grid()
        target = len(grid) if options.trials is None else min(options.trials, len(grid))
        enqueue_grid(handle, grid, seed, target)
        if target < len(grid):
            notes.append(f"grid has {len(grid)} points; this run covers a seeded random "
                         f"{target} of them (--trials)")
    else:
        target = options.trials or space.study.trials

    tracker = Tracker(options.tracking_uri, options.experiment or space.name) \
        if options.tracking else None
    session = _Session(space, handle, data, seed, strategy, pruner_spec.name != "none", tracker)
    parent = session.open_parent(pruner_spec.name, options)
    stop = threading.Event()
    done = counted_trials(handle.study)
    progress = StudyProgress(name, target, done, enabled=options.progress)
    interrupted = False
    try:
        with _stop_on_signals(stop, progress), progress:
            while not stop.is_set() and counted_trials(handle.study) < target:
                trial = claim_waiting(handle) or (None if strategy == "grid"
                                                  else handle.study.ask())
                if trial is None:
                    break
                outcome = session.run(trial, stop)
                if options.on_trial is not None:
                    options.on_trial(outcome)
                progress.update(counted_trials(handle.study), session.best_value(),
                                *session.pruned_failed())
        interrupted = stop.is_set()
        status = "KILLED" if interrupted else "FINISHED"
        final = {} if interrupted else session.finish(parent, options.log_model, options.views)
    except BaseException:
        session.abort(parent)
        raise
    if tracker is not None and parent is not None:
        tracker.end_run(parent, status)
    return session.result(started, interrupted, describe(options.storage), final, notes)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event, progress: StudyProgress) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the current epoch, record the trial, stop. Second: abort."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        progress.note(f"{signal.Signals(signum).name}: stopping at the end of this epoch "
                      "(again to abort)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Session:
    """The state of one `run_study` call: tracking runs, the best model trained here."""

    def __init__(self, space: Space, handle: StudyHandle, data: Dataset, seed: int,
                 strategy: str, prune: bool, tracker: Tracker | None):
        self.space = space
        self.handle = handle
        self.data = data
        self.seed = seed
        self.strategy = strategy
        self.prune = prune
        self.tracker = tracker
        self.parent: str | None = None
        self.best: TrialOutcome | None = None  # best COMPLETE trial trained in this process
        self.trial_seconds = 0.0
        self.tracking_trial_seconds = 0.0
        self._open: tuple[optuna.Trial, Any] | None = None
        self.ran = 0

    @property
    def study(self) -> optuna.Study:
        return self.handle.study

    def open_parent(self, pruner: str, options: RunOptions) -> str | None:
        if self.tracker is None:
            return None
        attrs = self.study.user_attrs
        same_store = attrs.get(ATTR_EXPERIMENT) == self.tracker.experiment_id
        resume = attrs.get(ATTR_PARENT_RUN) if same_store else None
        tags = {"study": self.study.study_name, "strategy": self.strategy,
                "sampler": type(self.study.sampler).__name__, "pruner": pruner,
                "seed": str(self.seed), "space_hash": self.space.hash,
                "space_name": self.space.name, "objective": self.space.objective.key,
                "direction": self.space.objective.direction}
        params = {"strategy": self.strategy, "seed": self.seed, "pruner": pruner,
                  "max_epochs": self.space.training.max_epochs,
                  "data": self.space.data.source, "objective": self.space.objective.key}
        tags.update(dict(options.extra_tags))
        self.parent = self.tracker.start_study(self.study.study_name, tags, params, resume,
                                               parent_run_id=options.parent_run_id)
        if self.parent != resume:
            self.study.set_user_attr(ATTR_PARENT_RUN, self.parent)
            self.study.set_user_attr(ATTR_EXPERIMENT, self.tracker.experiment_id)
        return self.parent

    def _start_tracking(self, trial: optuna.Trial) -> Any:
        def start(params: dict[str, Any]) -> Callback | None:
            if self.tracker is None or self.parent is None:
                return None
            spent = self.tracker.seconds
            run = self.tracker.start_trial(self.parent, self.study.study_name, trial.number,
                                           params, {"strategy": self.strategy})
            self.tracking_trial_seconds += self.tracker.seconds - spent
            self._open = (trial, run)
            return run
        return start

    def run(self, trial: optuna.Trial, stop: threading.Event) -> TrialOutcome:
        self._open = (trial, None)
        outcome, run = run_trial(trial, self.space, self.data, self.seed, stop, self.prune,
                                 self._start_tracking(trial))
        self.trial_seconds += outcome.seconds
        self.ran += 1
        self._record(trial, outcome, run)
        self._open = None
        return outcome

    def _record(self, trial: optuna.Trial, outcome: TrialOutcome, run: Any) -> None:
        study = self.study
        if outcome.reason:
            trial.set_user_attr(TRIAL_REASON, outcome.reason)
        if outcome.state == "COMPLETE":
            study.tell(trial, outcome.value)
            if self._improves(outcome):
                self.best = outcome
        elif outcome.state == "PRUNED":
            study.tell(trial, state=TrialState.PRUNED)
        elif outcome.state == "INTERRUPTED":
            trial.set_user_attr(TRIAL_INTERRUPTED, True)
            study.tell(trial, state=TrialState.FAIL)
            # The next run starts with the same parameters (and a grid keeps its point).
            grid_point = trial.user_attrs.get(TRIAL_GRID)
            attrs: dict[str, Any] = {"retry_of": trial.number}
            if grid_point is not None:
                attrs[TRIAL_GRID] = grid_point
            study.enqueue_trial(outcome.params if grid_point is not None else trial.params,
                                user_attrs=attrs)
        else:
            study.tell(trial, state=TrialState.FAIL)
        if run is not None and self.tracker is not None:
            spent = self.tracker.seconds
            tags: dict[str, Any] = {"epochs": outcome.epochs, "best_epoch": outcome.best_epoch,
                    "seed": outcome.seed}
            if outcome.reason:
                tags["fail_reason" if outcome.state == "FAIL" else "reason"] = outcome.reason
            metrics = {"objective": outcome.value} if outcome.value is not None else {}
            run.finish("KILLED" if outcome.state == "INTERRUPTED" else outcome.state,
                       tags, metrics)
            self.tracking_trial_seconds += self.tracker.seconds - spent

    def _improves(self, outcome: TrialOutcome) -> bool:
        if self.best is None or self.best.value is None or outcome.value is None:
            return True
        if self.space.objective.direction == "maximize":
            return outcome.value > self.best.value
        return outcome.value < self.best.value

    def abort(self, parent: str | None) -> None:
        """An exception or a second Ctrl-C: fail the open trial, end every run, keep the study."""
        if self._open is not None:
            trial, run = self._open
            with contextlib.suppress(Exception):
                trial.set_user_attr(TRIAL_INTERRUPTED, True)
                trial.set_user_attr(TRIAL_REASON, "aborted")
                self.study.tell(trial, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            if run is not None:
                with contextlib.suppress(Exception):
                    run.finish("KILLED", {"reason": "aborted"}, {})
        if self.tracker is not None and parent is not None:
            with contextlib.suppress(Exception):
                self.tracker.end_run(parent, "KILLED")

    def best_value(self) -> float | None:
        try:
            return float(self.study.best_value)
        except ValueError:
            return None

    def pruned_failed(self) -> tuple[int, int]:
        trials = self.study.get_trials(deepcopy=False)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        failed = sum(t.state == TrialState.FAIL and not t.user_attrs.get(TRIAL_INTERRUPTED)
                     for t in trials)
        return pruned, failed

    def finish(self, parent: str | None, log_model: bool, views: bool) -> dict[str, Any]:
        """Evaluate the best trial once on the test split; log the study's summary and model."""
        try:
            best = self.study.best_trial
        except ValueError:
            return {}
        if self.ran == 0 and self.tracker is not None and parent is not None:
            tags, logged = self.tracker.run_data(parent)
            if tags.get("best_trial_number") == str(best.number):
                # Nothing new since the last evaluation: report it instead of repeating it.
                test = {k[5:]: v for k, v in logged.items() if k.startswith("test_")}
                return {"test_metrics": test, "model_uri": tags.get("model_uri")}
        model = self._best_model(best)
        test = evaluate(model, self.data, self.data.test)
        final: dict[str, Any] = {"test_metrics": test, "model_uri": None}
        if self.tracker is None or parent is None:
            return final
        tags = {"best_trial_number": str(best.number)}
        metrics = {"best_value": float(best.value or 0.0), "best_trial": best.number,
                   **{f"test_{k}": v for k, v in test.items()}}
        self.tracker.log_summary(parent, metrics, tags)
        frame = self.study.trials_dataframe()
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        self.tracker.log_artifacts(parent, {
            "space.yaml": self.space.text,
            "best_params.json": json.dumps(best.user_attrs.get(TRIAL_PARAMS, best.params),
                                           indent=2, default=str),
            "trials.csv": buffer.getvalue(),
        })
        if views:
            from tuner._report import study_views

            self.tracker.log_artifacts(parent, study_views(self.study), folder="views")
        if log_model:
            final["model_uri"] = self.tracker.log_model(parent, self._scoring(model),
                                                        self._input_example())
            self.tracker.log_summary(parent, {}, {"model_uri": final["model_uri"]})
        return final

    def _best_model(self, best: optuna.trial.FrozenTrial) -> torch.nn.Module:
        if self.best is not None and self.best.number == best.number and self.best.fit:
            return self.best.fit.model
        # Trained by another process or an earlier run: retrain, same parameters and seed.
        params = best.user_attrs.get(TRIAL_PARAMS, best.params)
        result = fit(TrialConfig.from_params(params), self.data,
                     max_epochs=self.space.training.max_epochs,
                     early_stopping=self.space.training.early_stopping,
                     seed=int(best.user_attrs.get(TRIAL_SEED, 0)),
                     monitor=self.space.objective.key,
                     monitor_direction=self.space.objective.direction)
        return result.model

    def _scoring(self, model: torch.nn.Module) -> ScoringModel:
        scaler, target = self.data.feature_scaler, self.data.target_scaler
        return ScoringModel(model, scaler.mean, scaler.scale, self.data.task,
                            float(target.mean[0]) if target else 0.0,
                            float(target.scale[0]) if target else 1.0)

    def _input_example(self) -> Any:
        x = self.data.train.x[:5].numpy()
        scaler = self.data.feature_scaler
        return (x * scaler.scale + scaler.mean).astype("float32")

    def result(self, started: float, interrupted: bool, storage: str,
               final: dict[str, Any], notes: list[str]) -> StudyResult:
        trials = self.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        pruned, failed = self.pruned_failed()
        best = self.study.best_trial if complete else None
        return StudyResult(
            study=self.study.study_name, strategy=self.strategy, storage=storage,
            best_value=None if best is None else best.value,
            best_params={} if best is None else dict(best.user_attrs.get(TRIAL_PARAMS,
                                                                         best.params)),
            best_trial=None if best is None else best.number,
            n_complete=len(complete), n_pruned=pruned, n_failed=failed,
            wall_s=round(time.perf_counter() - started, 3),
            trials_s=round(self.trial_seconds, 3),
            tracking_s=round(self.tracking_trial_seconds, 3),
            test_metrics=final.get("test_metrics", {}),
            mlflow_experiment_id=self.tracker.experiment_id if self.tracker else None,
            mlflow_parent_run_id=self.parent,
            tracking_uri=self.tracker.experiment_url() if self.tracker else None,
            model_uri=final.get("model_uri"),
            interrupted=interrupted,
            notes=notes,
        )
