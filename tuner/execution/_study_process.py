"""A study process of `tuner compare --jobs N` (started by `_side_by_side.StudyProcesses`):
it prepares what every study needs, then runs the studies it is handed, one after another,
each through `run_study`, and tells the comparison's process what happens."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

import optuna
import torch

from tuner.data import Dataset, load_dataset
from tuner.errors import TunerError, first_line
from tuner.execution._finish import load_views
from tuner.execution._loop import stop_on_signals
from tuner.execution._options import Preparation, StudyTask
from tuner.execution._run import run_study
from tuner.execution._trial import TrialOutcome
from tuner.execution._workers import quiet_process
from tuner.space import TrialConfig
from tuner.tracking import prepare_client
from tuner.training import fit


def warm_up(data: Dataset, threads: int) -> None:
    """Pay a process's one-time costs of a first training step before any study, so they do
    not count against the first study's time."""
    torch.set_num_threads(threads)
    fit(TrialConfig.from_params({"n_layers": 1, "units": 8, "batch_size": 256}), data,
        max_epochs=1, early_stopping=None, seed=0)


def serve_studies(todo: Any, events: Any, stopping: Any, preparation: Preparation) -> None:
    """A spawned process: prepares, then runs studies from `todo`, one after another, until
    none is left or a signal. A signal during a study's trials stops the study (`run_study`
    handles it); one between them stops this process before its next study."""
    os.setpgrp()  # Ctrl-C in a terminal reaches the comparison's process, which passes it on
    quiet_process()
    stop = threading.Event()
    code = 0
    with stop_on_signals(stop, None):
        task: StudyTask | None = None
        try:
            _prepare(preparation)
            while not (stop.is_set() or stopping.is_set()):
                task = _next(todo)
                if task is None:
                    break
                optuna.logging.set_verbosity(task.verbosity)
                events.put(("started", task.index))
                result = run_study(task.space, dataclasses.replace(
                    task.options, on_trial=_relay(events, task.index)))
                events.put(("ended", task.index, result.interrupted))
                if result.interrupted:
                    break
        except KeyboardInterrupt:
            code = 130
        except BaseException as exc:
            events.put(("failed", -1 if task is None else task.index,
                        isinstance(exc, TunerError), f"{type(exc).__name__}: {first_line(exc)}"))
            code = 1
    events.close()
    events.join_thread()  # what was put must be delivered before os._exit
    sys.stdout.flush()
    os._exit(code)  # no atexit work: torch pools, queues


def _next(todo: Any) -> StudyTask | None:
    """The next study, or None: no more, or the comparison's process is gone (killed, say: no
    study would ever come, and nobody would end this process)."""
    parent = multiprocessing.parent_process()
    while True:
        try:
            task: StudyTask | None = todo.get(timeout=1.0)
            return task
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return None


def _prepare(preparation: Preparation) -> None:
    """What the process's first study would otherwise wait for."""
    warm_up(load_dataset(preparation.data), preparation.threads)
    prepare_client(preparation.tracking_uri)
    if preparation.views:
        load_views()


def _relay(events: Any, index: int) -> Callable[[TrialOutcome], None]:
    def relay(outcome: TrialOutcome) -> None:
        events.put(("trial", index, outcome.state, outcome.value))

    return relay
