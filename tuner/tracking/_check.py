"""Checking a tracking store before a study is created: reachable, writable, driver installed.

MLflow retries an unusable store for minutes (an unreachable server: about 250 s; PostgreSQL on
a dead port: about 100 s; SQLite in a read-only folder: about 55 s of warnings) or finds out at
the very end (a read-only artifact folder, when the model is logged). By then the study exists
in the journal, empty, and it refuses the next run with an edited space. `check_store` finds each
of these in seconds, in one line that names the store with its password masked, before anything
is written; the CLI exits with code 2.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import socket
import sqlite3
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from tuner._stores import SQL_SCHEMES, driver_url, existing_folder, missing_driver, scheme_of
from tuner._stores import sqlite_path as _sqlite_path
from tuner.errors import first_line, redact
from tuner.tracking._client import client_for
from tuner.tracking._errors import StoreError

TIMEOUT_S = 5.0  # each probe; a usable store answers in milliseconds


def check_store(tracking_uri: str | None, experiment: str | None = None,
                timeout_s: float = TIMEOUT_S) -> None:
    """Raise `StoreError` (one line) unless the tracking store can be reached and written: its
    server or database answers, its driver is installed, an SQLite file and its folder are
    writable, and so is the local folder the experiment's artifacts go to. A new SQLite store is
    created here (under a lock: see `tuner._stores`)."""
    uri = tracking_uri or str(mlflow.get_tracking_uri())
    shown = redact(uri)
    scheme = scheme_of(uri)
    if scheme in ("http", "https"):
        _check_server(uri, shown, timeout_s)
    elif scheme in SQL_SCHEMES:
        _check_database(uri, shown, timeout_s)
    elif scheme in ("", "file"):
        _check_writable(_local(uri), f"tracking store {shown}")
    elif scheme.startswith("databricks") or scheme == "uc":
        return  # MLflow's own errors are all we have
    # Any other scheme: a plugin's store answers below; one MLflow does not know fails there.
    try:
        client = client_for(uri)
        found = client.get_experiment_by_name(experiment) if experiment else None
    except MlflowException as exc:
        raise StoreError(_store_failure(uri, shown, exc)) from None
    except Exception as exc:  # drivers and SQLAlchemy raise many types
        raise StoreError(f"tracking store {shown} cannot be used: {first_line(exc)}") from None
    # Artifacts (the model, the study's views) are written at the end of a study: a read-only
    # folder must fail now, not after every trial has run.
    if found is not None:
        location: Any = found.artifact_location
    else:
        store = getattr(getattr(client, "_tracking_client", None), "store", None)
        location = getattr(store, "artifact_root_uri", None)
    if isinstance(location, str) and scheme_of(location) in ("", "file"):
        _check_writable(_local(location), f"the artifact folder of tracking store {shown}")


def holds_a_store(tracking_uri: str | None) -> bool:
    """Whether `tracking_uri` (None: MLFLOW_TRACKING_URI or MLflow's default) names an SQLite
    file that already holds MLflow's tables: checking it then writes nothing, so it may be
    checked before the study's own checks have passed."""
    path = _sqlite_path(tracking_uri or str(mlflow.get_tracking_uri()))
    if path is None or not path.is_file():
        return False
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(
            f"{path.absolute().as_uri()}?mode=ro", uri=True)) as db:
        return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'"
                          ).fetchone() is not None
    return False


def _check_server(uri: str, shown: str, timeout_s: float) -> None:
    parts = urllib.parse.urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise StoreError(f"MLflow tracking server {shown} is not reachable: "
                         f"{exc.strerror or type(exc).__name__}") from None
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    request = urllib.request.Request(f"{base}/health")
    if parts.username is not None:  # userinfo is not sent by urllib: basic auth, as MLflow does
        token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("Authorization", f"Basic {base64.b64encode(token.encode()).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return
    except urllib.error.HTTPError as exc:
        if exc.code < 500:  # it answers (authentication, an older server without /health)
            return
        raise StoreError(f"MLflow tracking server {shown} answers HTTP {exc.code} "
                         f"({exc.reason}): is it working?") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StoreError(f"MLflow tracking server {shown} does not answer: "
                         f"{redact(str(reason))}") from None


def _check_database(uri: str, shown: str, timeout_s: float) -> None:
    missing = missing_driver(uri)
    if missing:
        raise StoreError(f"tracking store {shown}: {missing}")
    path = _sqlite_path(uri)
    if scheme_of(uri) == "sqlite":
        if path is not None:
            _check_sqlite(path, shown)
        return
    parts = urllib.parse.urlsplit(uri)
    default = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}
    host, port = parts.hostname or "localhost", parts.port or default.get(scheme_of(uri), 0)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise StoreError(f"tracking store {shown} is not reachable: "
                         f"{exc.strerror or type(exc).__name__}") from None
    import sqlalchemy

    connect = {"connect_timeout": int(timeout_s)} if scheme_of(uri) != "mssql" else {}
    engine = sqlalchemy.create_engine(driver_url(uri), connect_args=connect,
                                      poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            if scheme_of(uri) in ("postgresql", "postgres"):
                read_only = connection.exec_driver_sql("SHOW transaction_read_only").scalar()
                if read_only == "on":
                    raise StoreError(f"tracking store {shown} is read-only (a standby server?)")
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"tracking store {shown} cannot be opened: {first_line(exc)}") from None
    finally:
        engine.dispose()


def _check_sqlite(path: Path, shown: str) -> None:
    """The file (if it exists) and its folder writable: SQLite writes a journal next to it."""
    if path.exists():
        if not path.is_file():
            raise StoreError(f"tracking store {shown}: {path} is not a file")
        # Asked, not tried: opening and closing the file would drop the POSIX locks that this
        # process's SQLite connections to it hold (a study run from Python, `tuner compare`),
        # and another process could then take the store for its own and fold its log away.
        if not os.access(path, os.W_OK):
            raise StoreError(f"tracking store {shown} is read-only (no permission to write "
                             "it): MLflow cannot write its runs")
        _check_writable(path.parent, f"the folder of tracking store {shown}")
    else:
        _check_writable(existing_folder(path), f"tracking store {shown} cannot be created: its "
                        "folder")


def _check_writable(folder: Path, what: str) -> None:
    """Create and remove a file in `folder` (or its deepest existing parent): permission bits
    do not tell (root, ACLs, read-only mounts), trying does."""
    target = folder if folder.is_dir() else existing_folder(folder / "x")
    if target.exists() and not target.is_dir():
        raise StoreError(f"{what} {target} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=target, prefix=".tuner-check-"):
            pass
    except OSError as exc:
        raise StoreError(f"{what} {target} is not writable ({exc.strerror})") from None


def _local(uri: str) -> Path:
    if uri.startswith("file:"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path))
    return Path(uri)


def _store_failure(uri: str, shown: str, exc: BaseException) -> str:
    """What to do about a store MLflow refuses; a half-created SQLite store says so."""
    path = _sqlite_path(uri)
    if path is None or not path.is_file():
        return f"tracking store {shown} cannot be used: {first_line(exc)}"
    versions = re.search(r"found version (\w+), but expected (\w+)", str(exc))
    found, wanted = versions.groups() if versions else ("unknown", "another")
    runs = "an unknown number of"
    with contextlib.suppress(sqlite3.Error), contextlib.closing(
            sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        runs = str(db.execute("SELECT count(*) FROM runs").fetchone()[0])
    detail = "" if versions else f" (MLflow says: {first_line(exc)})"
    return (f"tracking store {shown} has schema version {found}, MLflow {mlflow.__version__} "
            f"expects {wanted}{detail}: it was left half-created (two runs created it at once, "
            f"or one was stopped meanwhile) or made by another MLflow version; it holds {runs} "
            f"runs. If you need none of them, move it away and run again; else back it up and "
            f"run `mlflow db upgrade {shown}`")
