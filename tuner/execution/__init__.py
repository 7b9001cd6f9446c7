"""Running studies: options checked at the edge, the session of one process on one study, the one
run loop every mode shares (one process, local workers, Dask tasks, `tuner worker`; one objective
or several), finishing a study, comparisons of strategies, and final models.

Names load on first use (`RunOptions` without torch or MLflow), so the CLI checks its flags
before the heavy imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.execution._compare import (
        Listener,
        plan_grid,
        repeat_seed,
        run_comparison,
    )
    from tuner.execution._final import evaluate_study, train_space
    from tuner.execution._join import join_study
    from tuner.execution._loop import TrialSource, stop_on_signals, work
    from tuner.execution._options import (
        CompareOptions,
        FinalOptions,
        FinalResult,
        RunOptions,
        StudyResult,
        WorkerOptions,
        threads_per_worker,
    )
    from tuner.execution._progress import StudyProgress
    from tuner.execution._run import run_study
    from tuner.execution._session import Session
    from tuner.execution._side_by_side import (
        discard_prestarted_study_processes,
        prestart_study_processes,
    )
    from tuner.execution._trial import TrialOutcome

_WHERE = {
    "CompareOptions": "_options", "Listener": "_compare", "plan_grid": "_compare",
    "repeat_seed": "_compare", "run_comparison": "_compare",
    "FinalOptions": "_options", "FinalResult": "_options", "evaluate_study": "_final",
    "train_space": "_final", "join_study": "_join", "TrialSource": "_loop",
    "stop_on_signals": "_loop", "work": "_loop", "RunOptions": "_options",
    "StudyResult": "_options", "WorkerOptions": "_options", "StudyProgress": "_progress",
    "run_study": "_run", "Session": "_session", "TrialOutcome": "_trial",
    "threads_per_worker": "_options", "prestart_study_processes": "_side_by_side",
    "discard_prestarted_study_processes": "_side_by_side",
}

__all__ = [
    "CompareOptions", "FinalOptions", "FinalResult", "Listener", "RunOptions", "Session",
    "StudyProgress", "StudyResult", "TrialOutcome", "TrialSource", "WorkerOptions",
    "discard_prestarted_study_processes", "evaluate_study", "join_study", "plan_grid",
    "prestart_study_processes", "repeat_seed", "run_comparison", "run_study",
    "stop_on_signals", "threads_per_worker", "train_space", "work",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"tuner.execution.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tuner.execution' has no attribute {name!r}")
