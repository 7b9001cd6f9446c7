"""The live progress bar of `tuner run` (on stderr, so stdout stays clean for --json)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tuner.search import counted_trials, uncounted

if TYPE_CHECKING:
    from tuner.execution._session import Session


class StudyProgress:
    """trials done / planned, best value so far, pruned and failed counts, elapsed, ETA."""

    def __init__(self, title: str, planned: int, done: int, enabled: bool = True):
        self.enabled = enabled
        # Outside a terminal (a log, CI) rich assumes 80 columns and cuts the line ("0:03…");
        # the bar is printed once at the end there, so give it the room it needs.
        self.console = Console(file=sys.stderr, width=None if sys.stderr.isatty() else 200)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"),
            TextColumn("pruned {task.fields[pruned]} failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
            transient=False,
        )
        self._task = self._progress.add_task(title, total=planned, completed=done,
                                             best="-", pruned=0, failed=0)

    def __enter__(self) -> StudyProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def update(self, done: int, best: float | None, pruned: int, failed: int) -> None:
        self._progress.update(self._task, completed=done,
                              best="-" if best is None else f"{best:.4g}",
                              pruned=pruned, failed=failed)

    def note(self, message: str) -> None:
        if self.enabled:
            self._progress.console.print(message)


def show(session: Session, progress: StudyProgress) -> None:
    if progress.enabled:  # reads of the storage: not for nothing
        study = session.study
        trials = study.get_trials(deepcopy=False)
        best = None
        if not session.space.multi and any(t.state.name == "COMPLETE" for t in trials):
            best = float(study.best_value)
        pruned = sum(t.state.name == "PRUNED" for t in trials)
        failed = sum(t.state.name == "FAIL" and not uncounted(t) for t in trials)
        progress.update(counted_trials(study), best, pruned, failed)
