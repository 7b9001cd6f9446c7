"""`tuner compare --jobs N`: a comparison's studies side by side, N at a time.

Each study runs whole, through `run_study`, in a spawned process that runs one study after
another: its trials, seeds, pruning and final model are those of the same study run alone.
Only its times change: they include the other studies' use of the machine. The comparison's
process hands the studies out, relays each trial to the live view, passes Ctrl-C / SIGTERM on
(each study then stops as `tuner run` does: its runs end KILLED, the command resumes it), and
writes the comparison once every study has ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from tuner.data import Dataset, load_dataset
from tuner.errors import TunerError, first_line
from tuner.execution._finish import load_views
from tuner.execution._loop import stop_on_signals
from tuner.execution._options import RunOptions
from tuner.execution._run import run_study
from tuner.execution._trial import TrialOutcome
from tuner.execution._workers import quiet_process, start_processes
from tuner.space import DataSpec, Space, TrialConfig
from tuner.tracking import prepare_client
from tuner.training import fit


@dataclass(frozen=True)
class StudyTask:
    """One study of a comparison, as a process runs it (picklable: processes are spawned)."""

    index: int  # in the comparison's plans
    space: Space
    options: RunOptions  # without `on_trial`: the process relays trials itself


# What a study's process tells the comparison's: (kind, task index, ...).
Event = tuple[Any, ...]


def crowding_note(jobs: int, cores: int) -> str | None:
    """What to say when `jobs` study processes leave no core for the rest of their work."""
    if jobs < 2 or cores > jobs:
        return None
    return (f"--jobs {jobs} on {cores} cores: each study's process makes its own imports and "
            "writes its own MLflow runs beside its training, and no core is left for that; on "
            "so few cores --jobs 1, whose studies share one writer process, is faster")


def warm_up(data: Dataset, threads: int) -> None:
    """Pay a process's one-time costs of a first training step before any study, so they do
    not count against the first study's time."""
    torch.set_num_threads(threads)
    fit(TrialConfig.from_params({"n_layers": 1, "units": 8, "batch_size": 256}), data,
        max_epochs=1, early_stopping=None, seed=0)


@dataclass(frozen=True)
class Preparation:
    """What every study of the comparison will need, made by each process as it starts, while
    the comparison's process prepares: the data's first training step, MLflow's client."""

    data: DataSpec
    threads: int
    tracking_uri: str | None = field(repr=False)  # may hold a password
    views: bool


class StudyProcesses:
    """The processes that run a comparison's studies. Started on entering the block, so that
    their imports and warm-up overlap the comparison's own checks; `run` hands them the
    studies. Leaving the block without `run` (bad input found meanwhile) ends them: they had
    no study."""

    def __init__(self, jobs: int, preparation: Preparation):
        self._ctx = multiprocessing.get_context("spawn")
        self._todo, self._events = self._ctx.Queue(), self._ctx.Queue()
        self._stopping = self._ctx.Event()
        verbosity = optuna.logging.get_verbosity()  # a comparison may hush GP's warnings
        self._procs = [self._ctx.Process(
            target=_serve_studies, name=f"tuner-study-{i}", daemon=False,
            args=(self._todo, self._events, self._stopping, preparation, verbosity))
            for i in range(jobs)]
        self._ran = False

    def __enter__(self) -> StudyProcesses:
        start_processes(self._procs)
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._ran:
            self._stopping.set()
            for proc in self._procs:
                proc.kill()
                proc.join(timeout=30)

    def run(self, tasks: list[StudyTask], on_event: Callable[[Event], None]) -> bool:
        """Run `tasks`; True if a signal stopped them. `on_event` hears ("started", i),
        ("trial", i, state, value) and ("ended", i, interrupted) on this thread. A study that
        fails, or a process that dies, stops the others and raises here once they have ended."""
        self._ran = True
        procs, events = self._procs, self._events
        for task in tasks:
            self._todo.put(task)
        for _ in procs:
            self._todo.put(None)  # no more studies
        stop = threading.Event()
        failures: list[Event] = []
        interrupted = False

        def hear(event: Event) -> None:
            nonlocal interrupted
            if event[0] == "failed":
                failures.append(event)
                self._forward()
            else:
                interrupted |= event[0] == "ended" and bool(event[2])
                on_event(event)

        try:
            with stop_on_signals(stop, None, self._forward):
                while any(p.is_alive() for p in procs):
                    with contextlib.suppress(queue.Empty):
                        hear(events.get(timeout=0.2))
        except BaseException:
            self._forward()  # a second Ctrl-C, or the live view failing: the studies stop
            for proc in procs:
                proc.join(timeout=60)
            raise
        for proc in procs:
            proc.join()
        while True:
            try:
                hear(events.get_nowait())
            except (queue.Empty, OSError, ValueError):
                break
        _raise_failure(failures, procs, tasks, self._stopping.is_set())
        return interrupted or stop.is_set()

    def _forward(self) -> None:
        self._stopping.set()  # no process takes another study
        for proc in self._procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)


def _raise_failure(failures: list[Event], procs: list[Any], tasks: list[StudyTask],
                   stopped: bool) -> None:
    if failures:
        _, index, bad_input, message = failures[0]
        what = f"study {tasks[index].options.study_name}" if index >= 0 else "a study process"
        error = TunerError if bad_input else RuntimeError
        raise error(f"{what} failed: {message}; the other studies stopped (run the same command "
                    "to resume)")
    for proc in procs:
        # A process told to stop while it was still importing ends there: it had no study.
        if proc.exitcode not in (0, 130) and not (stopped and proc.exitcode == -signal.SIGTERM):
            code = proc.exitcode
            died = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 \
                else f"exit code {code}"
            raise RuntimeError(f"a process running the comparison's studies ended with {died}; "
                               "run the same command to resume its study")


def _serve_studies(todo: Any, events: Any, stopping: Any, preparation: Preparation,
                   verbosity: int) -> None:
    """A spawned process: prepares, then runs studies from `todo`, one after another, until
    none is left or a signal. A signal during a study's trials stops the study (`run_study`
    handles it); one between them stops this process before its next study."""
    os.setpgrp()  # Ctrl-C in a terminal reaches the comparison's process, which passes it on
    quiet_process()
    optuna.logging.set_verbosity(verbosity)
    stop = threading.Event()
    code = 0
    with stop_on_signals(stop, None):
        task: StudyTask | None = None
        try:
            _prepare(preparation)
            while not (stop.is_set() or stopping.is_set()):
                task = todo.get()
                if task is None:
                    break
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
