"""Opening Optuna storages from a URL or path, with passwords kept out of every message.

The default is Optuna's journal file in the working folder: unlike SQLite it is safe for several
processes writing at once, and it needs no server. Every storage is wrapped so that a database
that goes away for a few seconds (a restarted server, a killed connection) is waited for instead
of failing the study, and so that the time spent in storage calls is measured.
"""

from __future__ import annotations

import abc
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, get_storage
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend, JournalStorage
from optuna.trial import TrialState

from tuner._stores import creation_lock, driver_url, missing_driver, sqlite_path
from tuner.errors import StorageError, first_line, redact, require_extra
from tuner.search._defaults import DEFAULT_STORAGE, RETRY_S, kind_of
from tuner.search._journal import repair as repair_journal

# Errors that mean "the server is not there right now", by class name: the drivers are optional.
_TRANSIENT = {
    "sqlalchemy": {"OperationalError", "InterfaceError", "DisconnectionError", "TimeoutError"},
    "psycopg2": {"OperationalError", "InterfaceError"},
    "redis": {"ConnectionError", "TimeoutError", "BusyLoadingError"},
}
_log = logging.getLogger("tuner.storage")


class StorageUnavailable(RuntimeError):
    """The storage stayed unreachable for longer than the retry window (not bad input: exit 1)."""


def open_storage(url: str | None, retry_s: float = RETRY_S) -> RetryingStorage:
    url = url or DEFAULT_STORAGE
    kind = kind_of(url)
    if url.startswith(("postgresql", "postgres")):
        require_extra("postgres", f"the storage {url}")
    elif kind == "redis":
        require_extra("redis", f"the storage {url}")
    try:
        inner: BaseStorage
        if kind in ("rdb", "sqlite"):
            engine: dict[str, Any] = {"pool_pre_ping": True}  # a killed connection is replaced
            if url.startswith(("postgresql", "postgres")):
                engine["connect_args"] = {"connect_timeout": 10}
            missing = missing_driver(url)
            if missing:
                raise StorageError(f"cannot open storage {redact(url)!r}: {missing}")
            # Optuna's own cache in front of the database, as optuna.create_study would add.
            # Creating the tables of a new SQLite file is serialised: two runs started at once
            # would both create them, and one would fail ("table studies already exists").
            with creation_lock(sqlite_path(url)):
                inner = get_storage(RDBStorage(driver_url(url), engine_kwargs=engine))
        elif kind == "redis":
            with warnings.catch_warnings():  # "experimental" since Optuna 3.1; used as documented
                warnings.simplefilter("ignore", ExperimentalWarning)
                inner = JournalStorage(JournalRedisBackend(url))
        else:
            path = _journal_path(url)
            if path.parent and not path.parent.exists():
                raise StorageError(f"storage folder {str(path.parent)!r} does not exist")
            repair_journal(path)  # a torn last record, cut before anything is appended to it
            inner = JournalStorage(JournalFileBackend(str(path)))
        inner.get_all_studies()  # an unreachable server fails here, in one line, not later
    except StorageError:
        raise
    except ValueError as exc:
        if kind != "journal":
            raise StorageError(f"cannot open storage {redact(url)!r}: {first_line(exc)}") \
                from None
        raise StorageError(f"journal {url} is damaged: a record before its end cannot be read "
                           f"({first_line(exc)}); restore it from a backup (a repaired journal "
                           "keeps one as FILE.torn-DATE), or start afresh with another "
                           "--storage") from None
    except Exception as exc:  # drivers raise many types; all mean the same to the user
        raise StorageError(f"cannot open storage {redact(url)!r}: {first_line(exc)}") from None
    return _make_retrying(inner, redact(url), retry_s)


def shared_url(url: str | None) -> str:
    """The storage URL as other processes (another folder, a Dask worker) must see it."""
    url = url or DEFAULT_STORAGE
    kind = kind_of(url)
    if kind == "journal":
        return str(_journal_path(url).resolve())
    if kind == "sqlite" and not url.startswith("sqlite:////") and url.startswith("sqlite:///"):
        return "sqlite:///" + str(Path(url[len("sqlite:///"):]).resolve())
    return url


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def describe(url: str | None) -> str:
    return redact(url or DEFAULT_STORAGE)


def _journal_path(url: str) -> Path:
    return Path(url.split("://", 1)[1] if "://" in url else url)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the server is unreachable, not that we erred."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for cls in type(current).__mro__:
            names = _TRANSIENT.get(cls.__module__.split(".", 1)[0])
            if names and cls.__name__ in names:
                return True
        current = current.__cause__ or current.__context__
    return False


class RetryingStorage(BaseStorage):
    """Delegates to an Optuna storage; calls that meet an unreachable server are retried with
    backoff for `retry_s` seconds, then fail with a message that holds no password.

    Retrying writes is safe here: attribute writes are upserts, and a state change that did
    commit before its answer was lost is recognised on the retry (see `set_trial_state_values`).
    """

    def __init__(self, inner: BaseStorage, label: str, retry_s: float):
        self.inner = inner
        self.label = label  # redacted URL, for messages
        self.retry_s = retry_s
        self.seconds = 0.0  # time spent in storage calls by this process
        self.calls = 0

    def _retry(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        delay, attempt = 0.25, 0
        try:
            while True:
                try:
                    return fn(*args, **kwargs)
                except UpdateFinishedTrialError:
                    if attempt and name == "set_trial_state_values" and self._landed(*args, **kwargs):
                        return True
                    raise
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    waited = time.perf_counter() - start
                    if waited >= self.retry_s:
                        raise StorageUnavailable(
                            f"storage {self.label} unavailable for {waited:.0f} s "
                            f"({name}): {first_line(exc)}") from None
                    if attempt == 0:
                        _log.warning("storage %s unreachable (%s); retrying for up to %.0f s",
                                     self.label, first_line(exc), self.retry_s)
                    attempt += 1
                    time.sleep(min(delay, max(0.0, self.retry_s - waited)))
                    delay = min(delay * 2, 4.0)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def _landed(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        """A retried state change: did the attempt whose answer was lost commit it?"""
        return bool(self.inner.get_trial(trial_id).state == state)


def _delegate(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retry(name, getattr(self.inner, name), *args, **kwargs)

    method.__name__ = name
    return method


# Every public method of Optuna's storage interface goes through `_retry`.
for _name in [n for n in dir(BaseStorage) if not n.startswith("_") and n != "check_trial_is_updatable"]:
    if callable(getattr(BaseStorage, _name)):
        setattr(RetryingStorage, _name, _delegate(_name))
abc.update_abstractmethods(RetryingStorage)  # type: ignore[type-abstract]


def _make_retrying(inner: BaseStorage, label: str, retry_s: float) -> RetryingStorage:
    return RetryingStorage(inner, label, retry_s)  # type: ignore[abstract]
