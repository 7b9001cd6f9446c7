"""What reaches the user when something is wrong: one-line exceptions (exit code 2 in the CLI),
and the one rule that keeps secrets out of every message: `redact`.

The lowest layer of the package: every other module may import it, it imports nothing of tuner.
"""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)@")


class TunerError(Exception):
    """Bad input from the user: a file, a flag, a storage URL. Reported in one line, exit code 2."""


class SpaceError(TunerError):
    """A search-space file that cannot be used; the message names the file, key path and line."""

    def __init__(self, message: str, *, file: str = "<space>", path: str = "", line: int | None = None):
        self.file = file
        self.key_path = path
        self.line = line
        where = file if line is None else f"{file}:{line}"
        prefix = f"{where}: {path}: " if path else f"{where}: "
        super().__init__(prefix + message)
        self.reason = message


class DataError(TunerError):
    """Data that cannot be trained on: missing file or column, unusable target."""


class StorageError(TunerError):
    """A study storage that cannot be opened or used; never contains a password."""


class OptionError(TunerError):
    """An option with a value that cannot be used. `option` is its name in the Python API
    (`trials`); the CLI shows it as its flag (`--trials`), so both say the same thing."""

    def __init__(self, option: str, message: str):
        self.option = option
        self.message = message
        super().__init__(f"{option}: {message}")

    def as_flag(self, flag: str) -> str:
        return f"{flag}: {self.message}"


def redact(text: str) -> str:
    """Replace the password of any URL in `text` by '***'."""
    return _PASSWORD.sub(lambda m: f"{m.group('head')}***@", text)


def first_line(exc: BaseException) -> str:
    """An exception's first line (or its type), with passwords masked: what a message quotes."""
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)
