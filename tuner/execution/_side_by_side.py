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
from dataclasses import dataclass
from typing import Any

import optuna
import torch

from tuner.data import Dataset, load_dataset
from tuner.errors import TunerError, first_line
from tuner.execution._loop import stop_on_signals
from tuner.execution._options import RunOptions
from tuner.execution._run import run_study
from tuner.execution._trial import TrialOutcome
from tuner.execution._workers import quiet_process, start_processes
from tuner.space import Space, TrialConfig
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


def run_side_by_side(tasks: list[StudyTask], jobs: int, threads: int,
                     on_event: Callable[[Event], None]) -> bool:
    """Run `tasks` in `jobs` processes (fewer if there are fewer tasks); True if a signal
    stopped them. `on_event` hears ("started", i), ("trial", i, state, value) and
    ("ended", i, interrupted) from this thread. A study that fails, or a process that dies,
    stops the others and raises here once they have ended."""
    ctx = multiprocessing.get_context("spawn")
    todo, events, stopping = ctx.Queue(), ctx.Queue(), ctx.Event()
    verbosity = optuna.logging.get_verbosity()  # a comparison may hush GP's per-trial warnings
    procs = [ctx.Process(target=_serve_studies, args=(todo, events, stopping, threads, verbosity),
                         name=f"tuner-study-{i}", daemon=False)
             for i in range(min(jobs, len(tasks)))]
    for task in tasks:
        todo.put(task)
    for _ in procs:
        todo.put(None)  # no more studies
    start_processes(procs)

    def forward() -> None:
        stopping.set()  # no process takes another study
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    stop = threading.Event()
    failures: list[Event] = []
    interrupted = False

    def hear(event: Event) -> None:
        nonlocal interrupted
        if event[0] == "failed":
            failures.append(event)
            forward()
        else:
            interrupted |= event[0] == "ended" and bool(event[2])
            on_event(event)

    try:
        with stop_on_signals(stop, None, forward):
            while any(p.is_alive() for p in procs):
                with contextlib.suppress(queue.Empty):
                    hear(events.get(timeout=0.2))
    except BaseException:
        forward()  # a second Ctrl-C, or the live view failing: the studies stop too
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
    _raise_failure(failures, procs, tasks, stopping.is_set())
    return interrupted or stop.is_set()


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


def _serve_studies(todo: Any, events: Any, stopping: Any, threads: int, verbosity: int) -> None:
    """A spawned process: studies from `todo`, one after another, until none is left or a
    signal. A signal during a study's trials stops the study (`run_study` handles it); one
    between them stops this process before its next study."""
    os.setpgrp()  # Ctrl-C in a terminal reaches the comparison's process, which passes it on
    quiet_process()
    optuna.logging.set_verbosity(verbosity)
    stop = threading.Event()
    code = 0
    warmed = False
    with stop_on_signals(stop, None):
        task: StudyTask | None = None
        try:
            while not (stop.is_set() or stopping.is_set()):
                task = todo.get()
                if task is None:
                    break
                if not warmed:
                    warm_up(load_dataset(task.space.data), threads)
                    warmed = True
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


def _relay(events: Any, index: int) -> Callable[[TrialOutcome], None]:
    def relay(outcome: TrialOutcome) -> None:
        events.put(("trial", index, outcome.state, outcome.value))

    return relay
