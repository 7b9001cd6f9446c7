"""The run loop, the same in every mode (`tuner run` in one process, each local worker, each Dask
task, `tuner worker`, one objective or several): after each trial, check the stopping rules;
before each, reap the trials whose worker died; claim a queued trial or ask a new one within the budget; run
it; tell the study and MLflow; repeat.

`TrialSource` (in `_source`) decides what runs next; `work` runs what it hands out: one trial at
a time, or, for the built-in MLP, several at once as packs (`_pack.work_packed`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tuner.execution._pack import packs_trials, work_packed
from tuner.execution._progress import StudyProgress, show
from tuner.execution._session import Session
from tuner.execution._source import TrialSource
from tuner.execution._trial import TrialOutcome

__all__ = ["TrialSource", "show", "stop_on_signals", "work"]


def work(session: Session, stop: threading.Event, *, progress: StudyProgress | None = None,
         on_trial: Callable[[TrialOutcome], None] | None = None,
         max_trials: int | None = None) -> int:
    """Run trials of the session's study until it needs no more of this process (see
    `TrialSource`). Returns the number of trials run; a stopping rule that ended the loop is in
    `session.stats.stopped`."""
    source = TrialSource(session, stop, progress=progress, max_trials=max_trials)
    if packs_trials(session) and max_trials != 1:
        return work_packed(session, stop, source, progress=progress, on_trial=on_trial)
    ran = 0
    while (trial := source.next()) is not None:
        outcome = session.run(trial, stop)
        ran += 1
        if on_trial is not None:
            on_trial(outcome)
        if progress is not None:
            show(session, progress)
    return ran


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event, progress: StudyProgress | None,
                    forward: Callable[[], None] | None = None) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the current epoch, record the trial, stop. Second: abort.
    `forward` passes each signal on (to worker processes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if forward is not None:
            forward()
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if progress is not None:
            progress.note(f"{signal.Signals(signum).name}: stopping at the end of this epoch "
                          "(again to abort)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
