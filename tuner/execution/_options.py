"""How to run a study (`RunOptions`, checked once when it is made), what a run returns
(`StudyResult`), how to compare strategies (`CompareOptions`), how to train a final model
(`FinalOptions`) and what that returns (`FinalResult`). The CLI builds the same options
from its flags, so a bad value gets the same one-line error from both: `trials: must be >= 1,
got 0` (the CLI says `--trials: ...`). Nothing here imports torch or MLflow."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tuner.errors import OptionError, check_name, require_extra
from tuner.search import DEFAULT_TIMEOUT_S, RETRY_S, check_parallel
from tuner.space import PRUNERS, STRATEGIES, DataSpec, Space


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
    on_trial: Callable[[Any], None] | None = field(default=None, compare=False)
    workers: int = 1  # worker processes on this machine (torch threads split between them)
    dask: str | None = None  # a Dask scheduler address: trials run as tasks on that cluster
    allow_space_change: bool = False  # resume a study whose space changed (recorded with it)
    heartbeat_timeout: float = DEFAULT_TIMEOUT_S  # a silent RUNNING trial is failed, retried once
    storage_retry_s: float = RETRY_S  # how long an unreachable storage is waited for
    enqueue_file: str | None = None  # known points (YAML list or exported config), run first
    warm_start: str | None = None  # copy the fitting trials of this study into a new one
    patience: int | None = None  # stop after this many trials without a better best value
    timeout: float | None = None  # seconds; no trial starts after them, the running one ends
    # The final model: the chosen configuration retrained on train + validation (True), or the
    # chosen trial's own model, trained on the train split (False, `--no-refit`).
    refit: bool = True
    pack: int | None = None  # MLP trials trained at once: None sizes packs automatically
    device: str = "auto"  # auto (CUDA when available), cpu, cuda, cuda:N

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_at_least("pack", self.pack, 1)
        check_device("device", self.device)
        check_choice("pruner", self.pruner, PRUNERS)
        for name in ("trials", "threads", "patience", "workers"):
            check_at_least(name, getattr(self, name), 1)
        check_at_least("seed", self.seed, 0)
        check_positive("timeout", self.timeout)
        check_at_least("heartbeat_timeout", self.heartbeat_timeout, 1.0, unit=" s")
        check_at_least("storage_retry_s", self.storage_retry_s, 0.0, unit=" s")
        check_name("study_name", self.study_name)
        check_flag("refit", self.refit)
        for name in ("storage", "experiment", "tracking_uri", "dask", "enqueue_file",
                     "warm_start"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise OptionError(name, f"must be a non-empty string, got {value!r}")
        if self.dask is not None:
            require_extra("dask", f"running trials on the Dask cluster {self.dask}")


def check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise OptionError(name, f"must be true or false, got {value!r}")


def check_choice(name: str, value: str | None, choices: tuple[str, ...],
                 what: str | None = None) -> None:
    if value is not None and value not in choices:
        raise OptionError(name, f"unknown {what or name} {value!r}; choose from "
                          f"{', '.join(choices)}")


def check_at_least(name: str, value: float | None, low: float, unit: str = "") -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            (isinstance(low, int) and not isinstance(value, int)) or not math.isfinite(value):
        kind = "a whole number" if isinstance(low, int) else "a number"
        raise OptionError(name, f"must be {kind} >= {low:g}{unit}, got {value!r}")
    if value < low:
        raise OptionError(name, f"must be >= {low:g}{unit}, got {value!r}")


def check_device(name: str, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise OptionError(name, f"unknown device {value!r}; choose from auto, cpu, cuda, cuda:N")


def check_positive(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise OptionError(name, f"must be a number of seconds > 0, got {value!r}")


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
    stopped: str | None = None  # the stopping rule that ended the study early, if one did
    all_failed: bool = False  # every trial of the study failed (the CLI exits with code 1)
    # Which model `test_metrics` belong to ("trial 12, refit on train + validation (...)").
    test_model: str | None = None
    # How the final model was chosen, on validation only: kind (single, re-evaluated,
    # ensemble), trials, the score it stands on, reason, the raw best's optimism, timings.
    final: dict[str, Any] = field(default_factory=dict)
    training_s: float = 0.0  # wall time spent training models (packs counted once)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WorkerOptions:
    """`tuner worker`: join a stored study (its space, strategy, seed, pruner, budget and
    stopping rules are stored with it) and run its trials here."""

    storage: str
    study: str
    trials: int | None = None  # None: the budget of the latest `tuner run`
    workers: int = 1
    threads: int | None = None
    tracking_uri: str | None = None
    tracking: bool = True
    heartbeat_timeout: float = DEFAULT_TIMEOUT_S
    storage_retry_s: float = RETRY_S
    progress: bool = True
    pack: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        check_at_least("pack", self.pack, 1)
        check_device("device", self.device)
        if not isinstance(self.storage, str) or not self.storage.strip():
            raise OptionError("storage", f"must be a non-empty string, got {self.storage!r}")
        check_name("study", self.study)
        for name in ("trials", "threads", "workers"):
            check_at_least(name, getattr(self, name), 1)
        check_at_least("heartbeat_timeout", self.heartbeat_timeout, 1.0, unit=" s")
        check_at_least("storage_retry_s", self.storage_retry_s, 0.0, unit=" s")


@dataclass(frozen=True)
class CompareOptions:
    """How to compare strategies (`tuner compare`); None means "the space file's default"."""

    strategies: tuple[str, ...] = ("grid", "random", "tpe", "gp")
    trials: int | None = None  # per study; default: the space's study.trials
    repeats: int = 3
    seed: int | None = None  # default: the space's study.seed
    pruner: str | None = None
    name: str | None = None  # default: SPACE-compare
    experiment: str | None = None  # default: the comparison's name
    storage: str | None = None
    tracking_uri: str | None = None
    target: float | None = None
    out: str | None = None  # default: reports/NAME
    threads: int | None = None
    log_model: bool = True
    views: bool = True  # Optuna's plots per study: 3-8 s each
    refit: bool = True  # each study's final model retrained on train + validation
    pack: int | None = None  # MLP trials trained at once (None: automatic)
    device: str = "auto"
    jobs: int = 1  # studies run side by side, each in a process of its own

    def __post_init__(self) -> None:
        if not self.strategies:
            raise OptionError("strategies", "needs at least one strategy")
        for strategy in self.strategies:
            check_choice("strategies", strategy, STRATEGIES, "strategy")
        if len(set(self.strategies)) != len(self.strategies):
            raise OptionError("strategies", f"lists a strategy twice: {','.join(self.strategies)}")
        check_choice("pruner", self.pruner, PRUNERS)
        for name in ("trials", "repeats", "threads", "pack", "jobs"):
            check_at_least(name, getattr(self, name), 1)
        check_device("device", self.device)
        check_at_least("seed", self.seed, 0)
        if self.target is not None and (isinstance(self.target, bool) or not isinstance(
                self.target, int | float) or not math.isfinite(self.target)):
            raise OptionError("target", f"must be a finite number, got {self.target!r}")
        check_name("name", self.name)
        check_flag("refit", self.refit)
        if self.jobs > 1:  # several processes write the studies at once
            check_parallel(self.storage, f"--jobs {self.jobs}")

    def comparison_name(self, space_name: str) -> str:
        return self.name or f"{space_name}-compare"

    def experiment_name(self, space_name: str) -> str:
        """The MLflow experiment: the comparison's name unless one is given."""
        return self.experiment or self.comparison_name(space_name)


def threads_per_worker(threads: int | None, workers: int, flag: str = "workers"
                       ) -> tuple[int, str | None]:
    """Torch threads for each of `workers` processes (`--workers`, or `--jobs`: `flag`): one
    each unless asked (`--threads`), and never more than their share of the cores. A small
    MLP's steps are too short for intra-op threads to pay: they spin, and next to any other
    busy process they make a study several times slower; other cores serve worker processes
    (and the tracking writer) better."""
    cores = os.cpu_count() or 1
    share = max(1, cores // workers)
    if threads is None:
        return 1, None
    if workers > 1 and threads * workers > cores:
        return share, (f"--threads {threads} x {workers} {flag} exceeds {cores} cores: "
                       f"{share} torch thread(s) per process")
    return threads, None


@dataclass(frozen=True)
class StudyTask:
    """One study of a comparison, as a process runs it (picklable: processes are spawned)."""

    index: int  # in the comparison's plans
    space: Space
    options: RunOptions  # without `on_trial`: the process relays trials itself
    verbosity: int  # Optuna's, as the comparison has it (it may hush GP's per-trial warnings)


@dataclass(frozen=True)
class Preparation:
    """What every study of the comparison will need, made by each process as it starts, while
    the comparison's process prepares: the data's first training step, MLflow's client, the
    views page's imports."""

    data: DataSpec
    threads: int
    tracking_uri: str | None = field(repr=False)  # may hold a password
    views: bool

    @classmethod
    def of(cls, space: Space, options: CompareOptions) -> Preparation:
        return cls(space.data, threads_per_worker(options.threads, options.jobs, "jobs")[0],
                   options.tracking_uri, options.views)


@dataclass(frozen=True)
class FinalOptions:
    """How to train a final model; None means "the configuration's own"."""

    epochs: int | None = None  # evaluate: the best trial's best epoch; train: training.max_epochs
    early_stopping: bool = False  # keep a validation-sized slice apart and stop early on it
    seed: int | None = None
    register: str | None = None  # a model registry name
    tracking_uri: str | None = None
    experiment: str | None = None
    tracking: bool = True
    log_model: bool = True
    threads: int | None = None
    # Multi-objective studies: which Pareto-front member (tuner.search.pick); default the first.
    front_index: int | None = None
    where: str | None = None  # e.g. "params<50000": the best on the first objective meeting it

    def __post_init__(self) -> None:
        for name in ("epochs", "threads"):
            check_at_least(name, getattr(self, name), 1)
        check_at_least("seed", self.seed, 0)
        if self.register is not None and not (self.tracking and self.log_model):
            raise OptionError("register", "needs the model logged to MLflow: "
                              "not with {tracking=False} or {log_model=False}")
        if self.front_index is not None and self.where is not None:
            raise OptionError("where", "pick a front member by front_index or by where, not both")


@dataclass(frozen=True)
class FinalResult:
    name: str
    origin: str  # "study S, trial N" or the configuration file
    task: str
    params: dict[str, Any]
    epochs: int
    seed: int
    rows: dict[str, int]  # train / early_stopping / test
    test_metrics: dict[str, float]
    classes: list[str] = field(default_factory=list)
    confusion: list[list[int]] | None = None  # rows: true class, columns: predicted
    residuals: dict[str, float] | None = None
    mlflow_run_id: str | None = None
    model_uri: str | None = None  # PyTorch flavour
    scorer_uri: str | None = None  # pyfunc scoring raw table rows (tables only)
    registered: str | None = None  # "NAME version N"
    tracking_uri: str | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
