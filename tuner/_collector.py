"""Python's cyclic garbage collector while a process makes its imports.

Importing torch, scikit-learn, Optuna and MLflow makes about half a million long-lived objects
and almost no garbage, yet the collector walks all of them again each time they have grown by a
quarter: six full collections that freed almost nothing took 0.9 s of `tuner run`'s first four
seconds (2-core machine, Python 3.11), and as much again in the MLflow writer process. A process
that owns its start (`tuner run`, `tuner compare`, the writer process) pauses the collector
while it imports (`pause`), then moves what exists to the permanent generation, which no
collection walks, and resumes (`resume`): later full collections walk only what the study makes.
A library caller's collector is left alone (nothing paused it, so `resume` does nothing).
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_R = TypeVar("_R")
_paused = False


def pause() -> None:
    """Stop automatic collection until `resume` (only where it is on)."""
    global _paused
    if gc.isenabled() and not _paused:
        gc.disable()
        _paused = True


def resume() -> None:
    """The imports are made: freeze what they made and collect automatically again. Nothing
    happens unless `pause` paused the collector."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def paused() -> bool:
    return _paused


def pausing(command: Callable[_P, _R]) -> Callable[_P, _R]:
    """`command` runs with the collector paused until its trials start (they `resume` it), and
    leaves it on whatever happens (a command that fails before its trials, too)."""
    @functools.wraps(command)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        pause()
        try:
            return command(*args, **kwargs)
        finally:
            resume()
    return run
