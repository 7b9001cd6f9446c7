"""What reaches the user when something is wrong: one-line exceptions (exit code 2 in the CLI),
and the one rule that keeps secrets out of every message: `redact`.

The lowest layer of the package: every other module may import it, it imports nothing of tuner.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import traceback
from collections.abc import Callable
from typing import Any

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
    (`trials`); the CLI shows it as its flag (`--trials`), so both say the same thing.

    The message may name other options as `{name}` or `{force=True}`: the API shows them as the
    argument (`name=`, `force=True`), the CLI as the flag (`--name`, `--force`)."""

    def __init__(self, option: str, message: str):
        self.option = option
        self.message = message
        super().__init__(f"{option}: {self.render(_as_argument)}")

    def render(self, name_of: Callable[[str], str]) -> str:
        """The message with each `{option}` written by `name_of` (API argument or CLI flag)."""
        return _MENTION.sub(lambda m: name_of(m.group(1)) if m.group(2) is None or
                            name_of is not _as_argument else f"{m.group(1)}{m.group(2)}",
                            self.message)

    def as_flag(self, flag_of: Callable[[str], str]) -> str:
        return f"{flag_of(self.option)}: {self.render(flag_of)}"


_MENTION = re.compile(r"\{([a-z_]+)(=[^{}]*)?\}")


def _as_argument(option: str) -> str:
    return f"{option}="


class MissingExtra(TunerError):
    """A feature whose driver is an optional extra that is not installed (`tuner[postgres]`)."""


# What each extra brings, as (import name, ...): any one of them is enough.
EXTRAS = {"postgres": ("psycopg2", "psycopg"), "redis": ("redis",), "dask": ("distributed",),
          "dashboard": ("optuna_dashboard",), "notebook": ("papermill", "jupyterlab")}


def require_extra(extra: str, what: str) -> None:
    """One line naming the extra to install when `what` (e.g. "the storage postgresql://...")
    needs a driver that is not installed."""
    if not any(installed(module) for module in EXTRAS[extra]):
        raise MissingExtra(f"{redact(what)} needs the {extra} extra: pip install 'tuner[{extra}]'")


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_plain_name(value: object) -> bool:
    return isinstance(value, str) and bool(_NAME.match(value)) and len(value) <= 200


def check_name(option: str, value: str | None, what: str | None = None) -> None:
    """A name that becomes part of file paths (a study's, a comparison's, reports/NAME,
    NAME.yaml): plain characters only, so that nothing derived from it can leave its folder.
    `what` says where a derived name came from (a default study name, a stored study)."""
    if value is None or is_plain_name(value):
        return
    plain = "use letters, digits, '_', '.', '-' (and start with a letter or digit)"
    if what is None:
        raise OptionError(option, f"{value!r}: {plain}")
    raise OptionError(option, f"{what} is {value!r}, which cannot be part of a file name: "
                      f"{plain}")


def redact(text: str) -> str:
    """Replace the password of any URL in `text` by '***'."""
    return _PASSWORD.sub(lambda m: f"{m.group('head')}***@", text)


def first_line(exc: BaseException) -> str:
    """An exception's first line (or its type), with passwords masked: what a message quotes."""
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)


def redacted_traceback(exc: BaseException) -> str:
    """`--debug`'s traceback, chained exceptions included, with every password masked."""
    return redact("".join(traceback.format_exception(exc)))


def redact_logs() -> None:
    """Mask passwords in every log record from now on, wherever it is printed: MLflow's and
    SQLAlchemy's warnings quote store URLs, and their tracebacks quote exception messages."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's to report
            return record
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redacted_traceback(record.exc_info[1]).rstrip("\n")
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
