"""Opening Optuna storages from a URL or path, with passwords kept out of every message.

The default is Optuna's journal file in the working folder: unlike SQLite it is safe for several
processes writing at once, and it needs no server.
"""

from __future__ import annotations

import re
from pathlib import Path

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalRedisBackend, JournalStorage

from tuner._errors import StorageError

DEFAULT_STORAGE = "tuner.journal"
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)@")


def redact(text: str) -> str:
    """Replace the password of any URL in `text` by '***'."""
    return _PASSWORD.sub(lambda m: f"{m.group('head')}***@", text)


def kind_of(url: str) -> str:
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme in _RDB_SCHEMES:
        return "rdb"
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme in ("", "file", "journal"):
        return "journal"
    raise StorageError(f"unsupported storage URL {redact(url)!r}: use a journal file path, "
                       "sqlite:///, postgresql://, mysql:// or redis://")


def open_storage(url: str | None) -> BaseStorage:
    url = url or DEFAULT_STORAGE
    kind = kind_of(url)
    try:
        if kind == "rdb":
            return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        if kind == "redis":
            return JournalStorage(JournalRedisBackend(url))
        path = Path(url.split("://", 1)[1] if "://" in url else url)
        if path.parent and not path.parent.exists():
            raise StorageError(f"storage folder {str(path.parent)!r} does not exist")
        return JournalStorage(JournalFileBackend(str(path)))
    except StorageError:
        raise
    except Exception as exc:  # drivers raise many types; all mean the same to the user
        reason = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise StorageError(f"cannot open storage {redact(url)!r}: {reason}") from None


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


def describe(url: str | None) -> str:
    return redact(url or DEFAULT_STORAGE)



