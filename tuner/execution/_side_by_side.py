"""`tuner compare --jobs N`: a comparison's studies side by side, N at a time.

Each study runs whole, through `run_study`, in a spawned process that runs one study after
another (`_study_process`): its trials, seeds, pruning and final model are those of the same
study run alone. Only its times change: they include the other studies' use of the machine.
The comparison's process starts the processes first (`tuner compare` before its own imports:
this module imports no torch, Optuna or MLflow), hands the studies out, relays each trial to
the live view, passes Ctrl-C / SIGTERM on (each study then stops as `tuner run` does: its runs
end KILLED, the command resumes it), and writes the comparison once every study has ended.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any

from tuner.errors import TunerError
from tuner.execution._options import CompareOptions, Preparation, StudyTask
from tuner.execution._spawn import start_processes
from tuner.space import Space

# What a study's process tells the comparison's: (kind, task index, ...).
Event = tuple[Any, ...]
_prestarted: StudyProcesses | None = None


def prestart_study_processes(space: Space, options: CompareOptions) -> None:
    """Start the study processes of `tuner compare --jobs N` before the command's own imports;
    the comparison takes them over (`StudyProcesses.started`)."""
    global _prestarted
    if options.jobs > 1 and _prestarted is None:
        _prestarted = StudyProcesses(jobs_for(options), Preparation.of(space, options))


def discard_prestarted_study_processes() -> None:
    """End the study processes started for a command refused before it took them over."""
    global _prestarted
    found, _prestarted = _prestarted, None
    if found is not None:
        found.end()


def jobs_for(options: CompareOptions) -> int:
    """Processes for the comparison: `jobs`, or fewer when it has fewer studies."""
    return min(options.jobs, options.repeats * len(options.strategies))


def crowding_note(jobs: int, cores: int) -> str | None:
    """What to say when `jobs` study processes leave no core for the rest of their work."""
    if jobs < 2 or cores > jobs:
        return None
    return (f"--jobs {jobs} on {cores} cores: each study's process makes its own imports and "
            "writes its own MLflow runs beside its training, with no core left for that; on so "
            "few cores expect about the time of --jobs 1, whose studies share one writer process")


class StudyProcesses:
    """The processes that run a comparison's studies. They start when made (by `tuner compare`
    before its own imports, else by the comparison), so that their imports and warm-up
    overlap the comparison's own checks; `run` hands them the studies. Leaving the block
    without `run` (bad input found meanwhile) ends them: they had no study."""

    def __init__(self, jobs: int, preparation: Preparation):
        self.jobs, self.preparation = jobs, preparation
        self._ctx = multiprocessing.get_context("spawn")
        self._todo, self._events = self._ctx.Queue(), self._ctx.Queue()
        self._stopping = self._ctx.Event()
        self._procs = [self._ctx.Process(
            target=_serve, name=f"tuner-study-{i}", daemon=False,
            args=(self._todo, self._events, self._stopping, preparation)) for i in range(jobs)]
        self._ran = False
        start_processes(self._procs)

    @classmethod
    def started(cls, jobs: int, preparation: Preparation) -> StudyProcesses:
        """The processes `prestart` started for these studies, else new ones."""
        global _prestarted
        found, _prestarted = _prestarted, None
        if found is not None and (found.jobs, found.preparation) == (jobs, preparation):
            return found
        if found is not None:
            found.end()
        return cls(jobs, preparation)

    def __enter__(self) -> StudyProcesses:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._ran:
            self.end()

    def end(self) -> None:
        """End processes that were given no study (they hold nothing: killed)."""
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

        from tuner.execution._loop import stop_on_signals  # the studies' imports are made

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


def _serve(*args: Any) -> None:
    """A study process's entry: what it runs imports torch, Optuna and MLflow (not this
    module, which `tuner compare` imports before its own heavy imports)."""
    from tuner.execution._study_process import serve_studies

    serve_studies(*args)
