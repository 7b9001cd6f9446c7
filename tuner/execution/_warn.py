"""Clean-up that fails (the storage or the tracking server gone at the very end) is said, once,
as a warning: the run goes on ending, and the user knows what was left behind."""

from __future__ import annotations

import logging

from tuner.errors import first_line

_log = logging.getLogger("tuner")


def warn_failure(what: str, exc: BaseException) -> None:
    _log.warning("%s: %s", what, first_line(exc))
