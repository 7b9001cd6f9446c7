"""What options check about study storages at the edge, without importing Optuna (a quarter of a
second, with Redis's client): the default storage, the kinds of URL, which of them several
processes may write at once, and how long storages and heartbeats are waited for. `tuner run`
builds its options from these before it starts the writer process, which then starts sooner."""

from __future__ import annotations

from tuner._stores import scheme_of
from tuner.errors import StorageError, redact

DEFAULT_STORAGE = "tuner.journal"
RETRY_S = 30.0  # how long a storage may be unreachable before the run gives up
DEFAULT_TIMEOUT_S = 60.0  # a RUNNING trial without a heartbeat for this long is failed
_RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")


def kind_of(url: str) -> str:
    scheme = scheme_of(url)
    if scheme in _RDB_SCHEMES:
        return "sqlite" if scheme == "sqlite" else "rdb"
    if scheme in ("redis", "rediss"):
        return "redis"
    if scheme in ("", "file", "journal"):
        return "journal"
    raise StorageError(f"unsupported storage URL {redact(url)!r}: use a journal file path, "
                       "sqlite:///, postgresql://, mysql:// or redis://")


def check_parallel(url: str | None, what: str) -> None:
    """Refuse SQLite for several writing processes: it fails them with 'database is locked'."""
    if kind_of(url or DEFAULT_STORAGE) == "sqlite":
        raise StorageError(
            f"{what} needs a storage that several processes can write at once, and SQLite "
            f"({redact(url or '')}) locks the whole file ('database is locked'): use a journal "
            "file (the default, --storage tuner.journal), postgresql:// or redis://")
