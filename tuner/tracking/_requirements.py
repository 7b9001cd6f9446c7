"""The one MLflow internal that tuner's model logging steps around (pinned by
tests/test_mlflow_internals.py).

Every model MLflow saves goes through its check that the given pip requirements match what is
installed (`mlflow.utils.environment.warn_dependency_requirement_mismatches`). Before checking
a single requirement it maps every installed distribution to its modules, by reading each
one's file list: 1-2 s of Python, once per process, on the study's end or in the writer's
warm-up. tuner gives requirements that name the installed versions (`_model_io`), so the check
cannot find a mismatch; `requirements_as_given` skips it for tuner's own saves.

Only the module attribute that the save path calls is replaced, for the length of the save: a
save made meanwhile by another thread (a notebook's own model) would miss at most this
warning, never a requirement (MLflow's inferred requirements use the same map, which is left
alone).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_depth = 0
_saved: Any = None


@contextlib.contextmanager
def requirements_as_given() -> Iterator[None]:
    """MLflow's check of the given requirements against the installed packages skipped for a
    block (nested and concurrent blocks restore it once, when the last one ends)."""
    global _depth, _saved
    import mlflow.utils.environment as environment

    with _lock:
        if _depth == 0:
            _saved = environment.warn_dependency_requirement_mismatches
            environment.warn_dependency_requirement_mismatches = _unchecked
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                environment.warn_dependency_requirement_mismatches = _saved
                _saved = None


def _unchecked(model_requirements: list[str]) -> None:
    """In place of MLflow's check: tuner's requirements are the installed versions."""
