"""Real services for the scale-out tests: a fresh PostgreSQL database per test, a Redis database,
one `mlflow server` per session, and helpers to watch a study from outside.

The services are the ones `.ci/run` starts: PostgreSQL on 127.0.0.1:5432 (trust auth, user
postgres) and Redis on 127.0.0.1:6379.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
# Trust authentication accepts any password: a real one in the URL shows that it never leaks.
PASSWORD = "pw-Zq8rT5uV"
REDIS_URL = "redis://127.0.0.1:6379/7"  # a database of its own, emptied around each test

SLOW_SPACE = """\
name: slowfault
data: {source: digits}
training:
  max_epochs: 40
  early_stopping: false
study: {strategy: random, trials: 3, pruner: none, final: {top_k: 0}}  # no re-evaluation
params:
  n_layers: 3
  units: 256
  lr: {type: float, low: 1e-4, high: 1e-3, log: true}
  batch_size: 8
"""


def _admin() -> Any:
    conn = psycopg2.connect(dbname="postgres", **PG)
    conn.autocommit = True
    return conn


def drop_connections(database: str) -> int:
    """Terminate every connection to `database` (as a DBA or a failover would)."""
    with closing(_admin()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()", (database,))
        return int(cur.fetchone()[0])


def allow_connections(database: str, allow: bool) -> None:
    with closing(_admin()) as conn, conn.cursor() as cur:
        cur.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(allow).lower()}')


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    name = f"tuner_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.close()


def pg_url(database: str, password: str = PASSWORD) -> str:
    return f"postgresql://postgres:{password}@127.0.0.1:5432/{database}"


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        yield REDIS_URL
    finally:
        client.flushdb()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real `mlflow server` for the session: PostgreSQL backend store, local artifact root.
    It takes about 30 s to come up, so it is started once."""
    database = f"mlflow_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{database}"')
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    port = _free_port()
    log = (artifacts.parent / "mlflow-server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
         "--artifacts-destination", str(artifacts), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url) or proc.poll() is not None, 180, "mlflow server")
        assert proc.poll() is None, Path(log.name).read_text()[-2000:]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s", (database,))
            cur.execute(f'DROP DATABASE IF EXISTS "{database}"')
        conn.close()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def open_study(storage_url: str, name: str) -> Any:
    """The study as Optuna alone sees it (a fresh storage object each time: no caches)."""
    import optuna

    from tuner.search import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage_url))


def pg_trials(database: str, state: str) -> int:
    """How many trials of `database`'s studies are in `state` (read with plain SQL)."""
    try:
        with closing(psycopg2.connect(dbname=database, **PG)) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM trials WHERE state = %s", (state,))
            return int(cur.fetchone()[0])
    except psycopg2.Error:  # no tables yet, or connections refused
        return 0


def trials_of(storage: Any, study: str) -> list[Any]:
    """The study's trials now, or [] while it does not exist yet."""
    import optuna

    try:
        return list(optuna.load_study(study_name=study, storage=storage).get_trials())
    except KeyError:
        return []


def training_trial(url: str, study: str, min_age_s: float = 1.0) -> Any:
    """Wait for a trial that has been training for a while, its heartbeat naming its process."""
    from tuner.search import open_storage

    storage = open_storage(url)

    def find() -> Any:
        now = time.time()
        return next((t for t in trials_of(storage, study) if t.state.name == "RUNNING"
                     and "tuner:heartbeat" in t.system_attrs
                     and now - t.datetime_start.timestamp() > min_age_s), None)
    return wait_for(find, 240, "a trial in training")
