"""Optuna's chatter kept off a user's screen while tuner works: its INFO lines ("A new study
created ...", "Trial 3 finished ...") and its ExperimentalWarnings for features tuner uses on
purpose. The CLI and the Python API say the same, and the caller's settings come back after."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import optuna
from optuna.exceptions import ExperimentalWarning


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna at WARNING (unless the caller chose a level other than its default, INFO) and its
    ExperimentalWarnings off, for the duration only."""
    level = optuna.logging.get_verbosity()
    if level == optuna.logging.INFO:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ExperimentalWarning)
            yield
    finally:
        if level == optuna.logging.INFO:
            optuna.logging.set_verbosity(level)

