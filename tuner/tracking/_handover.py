"""A study run from Python hands its trial runs over to a writer process when enough of it is
left to pay for starting one.

`tuner run` and `tuner.run_study` start a writer process beside their imports (or take the one
kept from the interpreter's last study), and a comparison shares one among its studies
(`_pool`); a study in a process that holds MLflow and has no writer kept, or that found no core
spare as it started, writes from a thread, since a process started with the study would keep a
short study waiting for its imports (MLflow's: about 1.5 s). But a thread's MLflow work,
10-20 ms of Python per trial run, holds the training's interpreter lock: with trials of a tenth
of a second, a fifth to a quarter of the study. So once a few trial runs have started and say
that the rest of the study will take more than `MIN_REMAINING_S` (the time between trial starts
so far, times the trials left), a writer process starts on a spare core, and once it has the
store open the trial runs that start are written there. Runs already started stay with the
thread; the study's own calls (parent run, summary, model) stay in its process. A process not
ready when the study ends was given nothing, and is ended without waiting.
"""

from __future__ import annotations

import time

from tuner.tracking._writer import ProcessWriter, spare_core

MIN_REMAINING_S = 3.0  # twice what a writer process takes to be ready
# Trial runs started before the time between starts says much: packs start several at once
# (judged after two, one of six default studies of 16 trials started a process it hardly used).
_JUDGED_AFTER = 4


class HandOver:
    """The writer process that takes over the trial runs of a study of `budget` trials."""

    def __init__(self, tracking_uri: str | None, experiment: str, budget: int):
        self._tracking_uri, self._experiment, self._budget = tracking_uri, experiment, budget
        self._first = 0.0  # when the first trial run started
        self._started = 0  # trial runs started
        self.writer: ProcessWriter | None = None
        self._ready = False
        self._given_up = False
        self._seconds = 0.0

    def ready_writer(self) -> ProcessWriter | None:
        """Called as a trial run starts: the writer process if it has the store open, else None
        (the thread writes the run). Starts the process when the study's rest would take more
        than `MIN_REMAINING_S` and a core is spare. Never waits for it."""
        self._started += 1
        if self._ready or self._given_up:
            return self.writer if self._ready else None
        if self.writer is None:
            if self._started == 1:
                self._first = time.monotonic()
            if self._started < _JUDGED_AFTER:
                return None
            per_trial = (time.monotonic() - self._first) / (self._started - 1)
            if per_trial * (self._budget - self._started) < MIN_REMAINING_S:
                return None
            if not spare_core(1):
                self._given_up = True
                return None
            self.writer = ProcessWriter(self._tracking_uri, self._experiment, warm_up=False)
            self.writer.open_soon(self._experiment)
            return None
        opened = self.writer.opened()
        if opened is False:  # it could not open the study's store: the thread goes on
            self.writer.abandon()
            self._given_up = True
        self._ready = bool(opened)
        return self.writer if self._ready else None

    @property
    def seconds(self) -> float:
        """Time the process spent writing."""
        return self.writer.seconds if self.writer is not None else self._seconds

    def close(self) -> None:
        """Write what the process was given (if it was ready) and end it."""
        writer, self.writer = self.writer, None
        if writer is None or self._given_up:
            return
        if self._ready:
            writer.close()
            self._seconds = writer.seconds
        else:
            writer.abandon()
