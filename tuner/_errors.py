"""Exceptions that reach the user as one-line messages (exit code 2 in the CLI)."""

from __future__ import annotations


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
