"""`run_study`: the loop that claims trials, runs them, records outcomes, and ends cleanly."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from tuner._data import Dataset, load_dataset
from tuner._errors import TunerError
from tuner._heartbeat import DEFAULT_TIMEOUT_S, Heartbeat, LostTrial, interval_for
from tuner._hparams import TrialConfig
from tuner._loop import stop_on_signals, work
from tuner._model import ScoringModel
from tuner._objective import TrialOutcome, run_trial
from tuner._progress import StudyProgress
from tuner._sampling import sampler_name, seeded_sampler
from tuner._spec import STRATEGIES, Space
from tuner._storage import RETRY_S, describe, open_storage
from tuner._strategies import make_pruner
from tuner._study import (
    ATTR_EXPERIMENT,
    ATTR_PARENT_RUN,
    TRIAL_INTERRUPTED,
    TRIAL_PARAMS,
    TRIAL_REASON,
    TRIAL_SEED,
    StudyHandle,
    counted_trials,
    default_study_name,
    open_study,
    plan_budget,
    retry_attrs,
    retry_params,
    uncounted,
)
from tuner._tracking import Tracker, fail_trial_run
from tuner._training import Callback, evaluate, fit
from tuner._workers import check_scaling, pruner_spec_for, run_elsewhere


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
    workers: int = 1  # worker processes on this machine (torch threads split between them)
    dask: str | None = None  # a Dask scheduler address: trials run as tasks on that cluster
    allow_space_change: bool = False  # resume a study whose space changed (recorded with it)
    heartbeat_timeout: float = DEFAULT_TIMEOUT_S  # a silent RUNNING trial is failed, retried once
    storage_retry_s: float = RETRY_S  # how long an unreachable storage is waited for
    # Warm starts and stopping (tuner._warmstart, tuner._stopping).
    enqueue_file: str | None = None  # known points (YAML list or exported config), run first
    warm_start: str | None = None  # copy the fitting trials of this study into a new one
    patience: int | None = None  # stop after this many trials without a better best value
    timeout: float | None = None  # seconds; no trial starts after them, the running one ends


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
    tracking_s: float  # MLflow time on the trials' critical path (queueing, waiting)
    test_metrics: dict[str, float]
    mlflow_experiment_id: str | None
    mlflow_parent_run_id: str | None
    tracking_uri: str | None
    model_uri: str | None
    interrupted: bool
    notes: list[str] = field(default_factory=list)
    storage_s: float = 0.0  # time in storage calls, all workers together
    tracking_background_s: float = 0.0  # MLflow calls written by the background thread

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_study(space: Space, options: RunOptions | None = None) -> StudyResult:
    """Create or resume the study described by `space` and run it to its trial budget."""
    options = options or RunOptions()
    started = time.perf_counter()
    if space.multi:  # a Pareto front, not one best trial: its own loop
        from tuner._multi import run_multi

        return run_multi(space, options)
    strategy = options.strategy or space.study.strategy
    if strategy not in STRATEGIES:
        raise TunerError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    seed = space.study.seed if options.seed is None else options.seed
    pruner_spec = pruner_spec_for(space, options.pruner)
    threads, notes = check_scaling(options)
    torch.set_num_threads(threads)
    data = load_dataset(space.data)  # bad data fails here, before any study or run exists

    name = options.study_name or default_study_name(space, strategy, seed)
    storage = open_storage(options.storage, options.storage_retry_s)
    from tuner._warmstart import apply_warm_start, check_warm_start

    known = check_warm_start(storage, name, space, options)  # before anything is written
    handle = open_study(storage, name, space, strategy, seed, seeded_sampler(strategy, seed),
                        make_pruner(pruner_spec, space.training.max_epochs),
                        allow_change=options.allow_space_change)
    target = plan_budget(handle, space, strategy, seed, options.trials, pruner_spec.name, notes)
    target += apply_warm_start(handle.study, space, storage, options, known, notes)
    tracker = Tracker(options.tracking_uri, options.experiment or space.name) \
        if options.tracking else None
    session = _Session(space, handle, data, seed, strategy, pruner_spec.name != "none", tracker,
                       heartbeat_timeout=options.heartbeat_timeout)
    parent = session.open_parent(pruner_spec.name, options)
    if handle.changes and tracker is not None and parent is not None:
        tracker.log_summary(parent, {}, {"space_changes": json.dumps(list(handle.changes))})
    stop = threading.Event()
    progress = StudyProgress(name, target, counted_trials(handle.study), enabled=options.progress)
    from tuner._stopping import Stopper

    stopper = Stopper(options.patience, options.timeout, started)
    on_trial = stopper.watch(lambda: handle.study, stop, options.on_trial)
    try:
        if options.workers > 1 or options.dask is not None:
            with progress:
                notes += run_elsewhere(session, options, target, threads, stop, progress)
        else:
            with stop_on_signals(stop, progress), progress:
                work(session, target, stop, progress=progress, on_trial=on_trial)
        interrupted = stop.is_set() and stopper.reason is None
        notes += [stopper.reason] if stopper.reason else []
        done = counted_trials(handle.study)
        if not interrupted and done < target and strategy != "grid" and not stopper.reason:
            raise RuntimeError(f"the study has {done} of {target} trials after all workers "
                               "ended (see the notes above); run the same command to resume")
        status = "KILLED" if interrupted else "FINISHED"
        final = {} if interrupted else session.finish(parent, options.log_model, options.views)
    except BaseException as exc:
        session.abort(parent, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    if tracker is not None and parent is not None:
        tracker.end_run(parent, status)
    return session.result(started, interrupted, describe(options.storage), final, notes)


class _Session:
    """The state of one `run_study` call: tracking runs, the best model trained here."""

    def __init__(self, space: Space, handle: StudyHandle, data: Dataset, seed: int,
                 strategy: str, prune: bool, tracker: Tracker | None, *,
                 heartbeat_timeout: float = DEFAULT_TIMEOUT_S):
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
        self.heartbeat_timeout = heartbeat_timeout
        self.worker_storage_s = 0.0  # storage time of worker processes, reported at their end
        self.storage_base = float(getattr(handle.storage, "seconds", 0.0))

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
                "sampler": sampler_name(self.study.sampler), "pruner": pruner,
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
                                           params, {"strategy": self.strategy, **(
                                               {"enqueued": "true"} if trial.user_attrs.get(
                                                   "enqueued") else {})})
            self.tracking_trial_seconds += self.tracker.seconds - spent
            self._open = (trial, run)
            return run
        return start

    def run(self, trial: optuna.Trial, stop: threading.Event) -> TrialOutcome:
        self._open = (trial, None)
        with Heartbeat(self.handle, trial._trial_id, interval_for(self.heartbeat_timeout)):
            started = time.perf_counter()
            try:
                outcome, run = run_trial(trial, self.space, self.data, self.seed, stop,
                                         self.prune, self._start_tracking(trial))
            except UpdateFinishedTrialError:  # reaped as lost while it trained (a long stall)
                run = self._open[1] if self._open else None
                outcome = TrialOutcome(trial.number, "LOST", {}, 0,
                                       seconds=time.perf_counter() - started)
            self.trial_seconds += outcome.seconds
            self.ran += 1
            self._record(trial, outcome, run)
        self._open = None
        return outcome

    def _record(self, trial: optuna.Trial, outcome: TrialOutcome, run: Any) -> None:
        study = self.study
        try:
            if outcome.state == "LOST":
                raise UpdateFinishedTrialError("failed by another process")
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
                self._requeue(trial)
            else:
                study.tell(trial, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError):
            if not self.handle.storage.get_trial(trial._trial_id).state.is_finished():
                raise
            # Another process declared this trial lost (no heartbeat) and queued its retry: the
            # result here is dropped so that the study holds one outcome per trial.
            outcome.state = "LOST"
            outcome.reason = (f"declared lost by another process (no heartbeat for over "
                              f"{self.heartbeat_timeout:.0f} s); its retry runs as a new trial")
        if run is not None and self.tracker is not None:
            spent = self.tracker.seconds
            tags: dict[str, Any] = {"epochs": outcome.epochs, "best_epoch": outcome.best_epoch,
                    "seed": outcome.seed}
            if outcome.reason:
                tags["fail_reason" if outcome.state in ("FAIL", "LOST") else "reason"] = \
                    outcome.reason
            metrics = {"objective": outcome.value} if outcome.value is not None else {}
            state = {"INTERRUPTED": "KILLED", "LOST": "FAIL"}.get(outcome.state, outcome.state)
            run.finish(state, tags, metrics)
            self.tracking_trial_seconds += self.tracker.seconds - spent

    def _improves(self, outcome: TrialOutcome) -> bool:
        if self.best is None or self.best.value is None or outcome.value is None:
            return True
        if self.space.objective.direction == "maximize":
            return outcome.value > self.best.value
        return outcome.value < self.best.value

    def abort(self, parent: str | None, status: str = "KILLED") -> None:
        """An exception or a second Ctrl-C: fail the open trial, end every run, keep the study.
        If the storage is gone, the trial stays RUNNING and is reaped by its heartbeat."""
        if self._open is not None:
            trial, run = self._open
            with contextlib.suppress(Exception):
                trial.set_user_attr(TRIAL_INTERRUPTED, True)
                trial.set_user_attr(TRIAL_REASON, "aborted")
                self._requeue(trial)
            if run is not None:
                with contextlib.suppress(Exception):
                    run.finish("KILLED" if status == "KILLED" else "FAIL",
                               {"reason": "aborted" if status == "KILLED" else "run failed"}, {})
        if self.tracker is not None and parent is not None:
            with contextlib.suppress(Exception):
                self.tracker.end_run(parent, status)

    def _requeue(self, trial: optuna.Trial) -> None:
        """Fail `trial` and queue it again: the next run starts with the same parameters (a
        grid point stays the same point, so the grid is still run exactly once)."""
        frozen = self.handle.storage.get_trial(trial._trial_id)
        self.study.tell(trial, state=TrialState.FAIL)
        self.study.enqueue_trial(retry_params(frozen), user_attrs=retry_attrs(frozen, lost=False),
                                 skip_if_exists=False)

    def end_lost_run(self, lost: LostTrial) -> None:
        """End the MLflow run of a trial whose worker died (reaped by this process)."""
        if self.tracker is not None:
            fail_trial_run(self.tracker, self.study.study_name, lost.number, None, lost.reason)

    def best_value(self) -> float | None:
        try:
            return float(self.study.best_value)
        except ValueError:
            return None

    def pruned_failed(self) -> tuple[int, int]:
        trials = self.study.get_trials(deepcopy=False)
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        failed = sum(t.state == TrialState.FAIL and not uncounted(t) for t in trials)
        return pruned, failed

    def finish(self, parent: str | None, log_model: bool, views: bool) -> dict[str, Any]:
        """Evaluate the best trial once on the test split; log the study's summary and model."""
        try:
            best = self.study.best_trial
        except ValueError:
            return {}
        if self.space.model != "mlp":  # a custom trainer's model is its own: nothing to retrain
            if self.tracker is not None and parent is not None:
                self.tracker.log_summary(parent, {"best_value": float(best.value or 0.0),
                                                  "best_trial": best.number},
                                         {"best_trial_number": str(best.number)})
            return {}
        if self.ran == 0 and self.tracker is not None and parent is not None:
            tags, logged = self.tracker.run_data(parent)
            if tags.get("best_trial_number") == str(best.number):
                # Nothing new since the last evaluation: report it instead of repeating it.
                test = {k[5:]: v for k, v in logged.items() if k.startswith("test_")}
                return {"test_metrics": test, "model_uri": tags.get("model_uri")}
        from tuner._final import data_metrics, log_models
        from tuner._training import criterion

        model = self._best_model(best)
        test = evaluate(model, self.data, self.data.test,
                        loss_fn=criterion(self.data, self.space.training.loss))
        final: dict[str, Any] = {"test_metrics": test, "model_uri": None}
        if self.tracker is None or parent is None:
            return final
        tags = {"best_trial_number": str(best.number)}
        metrics = {"best_value": float(best.value or 0.0), "best_trial": best.number,
                   **{f"test_{k}": v for k, v in test.items()}, **data_metrics(self.data)}
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
            # The PyTorch model; for tables also a scorer of raw rows (pipeline + model).
            final["model_uri"], scorer = log_models(self.tracker, parent, model, self.data)
            self.tracker.log_summary(parent, {}, {"model_uri": final["model_uri"],
                                                  **({"scorer_uri": scorer} if scorer else {})})
        return final

    def _best_model(self, best: optuna.trial.FrozenTrial) -> torch.nn.Module:
        if self.best is not None and self.best.number == best.number and self.best.fit:
            return self.best.fit.model
        # Trained by another process or an earlier run: retrain, same parameters and seed.
        params = best.user_attrs.get(TRIAL_PARAMS, best.params)
        # A cross-validated trial kept no single model either: it is trained on the train split.
        result = fit(TrialConfig.from_params(params), self.data,
                     max_epochs=self.space.training.max_epochs,
                     early_stopping=self.space.training.early_stopping,
                     seed=int(best.user_attrs.get(TRIAL_SEED, 0)),
                     monitor=self.space.objective.key,
                     monitor_direction=self.space.objective.direction,
                     loss=self.space.training.loss)
        return result.model

    def _scoring(self, model: torch.nn.Module) -> ScoringModel:
        from tuner._final import scoring_model

        return scoring_model(model, self.data)

    def _input_example(self) -> Any:
        from tuner._final import input_example

        return input_example(self.data)

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
            tracking_background_s=round(self.tracker.background_seconds, 3)
            if self.tracker else 0.0,
            test_metrics=final.get("test_metrics", {}),
            mlflow_experiment_id=self.tracker.experiment_id if self.tracker else None,
            mlflow_parent_run_id=self.parent,
            tracking_uri=self.tracker.experiment_url() if self.tracker else None,
            model_uri=final.get("model_uri"),
            interrupted=interrupted,
            notes=notes,
            storage_s=round(self.worker_storage_s + getattr(self.handle.storage, "seconds", 0.0),
                            3),
        )
