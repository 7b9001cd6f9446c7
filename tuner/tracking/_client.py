"""The MLflow client on a tracking store, and everything the tracker does to the store, as
functions of a client: run by the tracker itself (and its background thread), or by its writer
process (`tuner run`), where they are named in a request, so that the study's process never
imports MLflow.

A new SQLite store (the default `sqlite:///mlflow.db` in a new folder) starts as a copy of an
empty store made once per machine and MLflow version: creating the schema runs MLflow's ~60
database migrations (about a second, several on a busy machine), the copy takes milliseconds.
MLflow checks the schema's revision whenever it opens a store, so a copy that does not match
the installed MLflow would be refused, not used.

Such a store keeps a write-ahead log (SQLite's WAL mode), unless it lies on a network file
system. MLflow writes a trial's run in about 7 commits; in SQLite's default rollback mode each
commit syncs a journal and the database (about 1 ms each, a third of a run's cost here), in WAL
mode it appends to the log, and the MLflow UI reading the store no longer blocks the study
writing to it. SQLite keeps the mode in the file, so every program that opens the store uses
it. `settle` folds the log back into the file when a study's writing ends, so `mlflow.db` alone
is complete (to copy or back up) and the log's files go once no process has the store open.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuner._stores import creation_lock, driver_url, on_network_filesystem, scheme_of, sqlite_path
from tuner.errors import redact, require_extra

BATCH_LIMIT = 1000  # MLflow's limit of metrics per log_batch call
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED",
              "FAILED": "FAILED", "KILLED": "KILLED", "INTERRUPTED": "KILLED"}
PARENT_RUN_TAG = "mlflow.parentRunId"

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


def store_uri(tracking_uri: str | None) -> str:
    """The tracking URI as MLflow gets it: None is MLFLOW_TRACKING_URI or MLflow's default; a
    PostgreSQL database needs the postgres extra, and a bare `postgresql://` gets the driver that
    is installed (SQLAlchemy 2.1 would assume psycopg 3)."""
    if not tracking_uri:
        import mlflow

        tracking_uri = str(mlflow.get_tracking_uri())
    uri = tracking_uri
    if scheme_of(uri) in ("postgresql", "postgres"):
        require_extra("postgres", f"the tracking URI {uri}")
    return driver_url(uri)


def client_for(tracking_uri: str | None) -> MlflowClient:
    """An MLflow client on `tracking_uri` (None: MLFLOW_TRACKING_URI or MLflow's default), with
    MLflow's chatter kept off the user's terminal."""
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # With a tracking server, MLflow prints each ended run's URL on stdout (and fetches the run
    # to do so): that would break `--json` and cost a request per trial.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    uri = store_uri(tracking_uri)
    path = sqlite_path(uri)
    if path is None or uri in _OPENED:
        return MlflowClient(uri)
    # Opening the store creates (or migrates) its tables; two processes doing that at once
    # break it (see tuner._stores), so the first opening happens under the folder's lock.
    with creation_lock(path):
        _seed_sqlite(path)
        client = MlflowClient(uri)
        client.search_experiments(max_results=1)
    _OPENED.add(uri)
    return client


_OPENED: set[str] = set()  # SQLite stores this process has opened (created) already


def _seed_sqlite(path: Path) -> None:
    """A new local SQLite store: copy the empty store of this MLflow version (made once)."""
    if path.exists() or not path.parent.is_dir():
        return
    try:
        template = _template()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.copyfile(template, tmp)
        try:
            if not on_network_filesystem(path.parent):
                with contextlib.suppress(sqlite3.Error), \
                        contextlib.closing(sqlite3.connect(tmp)) as db:
                    db.execute("PRAGMA journal_mode=WAL")
            with contextlib.suppress(FileExistsError):  # another process made it meanwhile
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except Exception:  # a cache that cannot be made (read-only home, ...): MLflow creates it
        return


def _template() -> Path:
    import mlflow
    from mlflow.tracking import MlflowClient

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tuner"
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if template.exists():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        db = Path(tmp) / "empty.db"
        MlflowClient(f"sqlite:///{db}").search_experiments()  # creates the schema
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            os.link(db, template)
    return template


def settle(client: MlflowClient | None, tracking_uri: str | None) -> None:
    """Close `client`'s connections to a SQLite store and fold its write-ahead log (if any) into
    the database file: the file alone then holds every run, and SQLite removes the log's files
    if no other process has the store open. Waits at most a second for readers (the MLflow UI)
    and never fails: the log is part of the store until it is folded in."""
    path = sqlite_path(tracking_uri or "")
    if path is None or not path.is_file():
        return
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    with contextlib.suppress(Exception):  # MLflow's store may change shape: then it stays open
        store.engine.dispose()  # type: ignore[union-attr]
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(
            f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=1.0)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def experiment_named(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created (or restored) if need be; safe against another
    process creating it at the same moment."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:  # another process created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


def write_run(client: MlflowClient, run_id: str, metrics: list[tuple[str, float, int, int]],
              tags: list[tuple[str, str]], status: str | None,
              params: Sequence[tuple[str, str]] = ()) -> None:
    """A trial run's params (its first write), metrics (in batches of MLflow's limit), tags and
    end: one `log_batch` for all of it unless the metrics exceed one batch."""
    from mlflow.entities import Metric, Param, RunTag

    points = [Metric(k, v, ts, step) for k, v, ts, step in metrics]
    run_tags = [RunTag(k, v) for k, v in tags]
    run_params = [Param(k, v) for k, v in params]
    for i in range(0, max(len(points), 1), BATCH_LIMIT):
        chunk = points[i:i + BATCH_LIMIT]
        first, last = i == 0, i + BATCH_LIMIT >= len(points)
        if chunk or (last and run_tags) or (first and run_params):
            client.log_batch(run_id, metrics=chunk, params=run_params if first else [],
                             tags=run_tags if last else [])
    if status is not None:
        client.set_terminated(run_id, status=RUN_STATUS.get(status, status))


def create_run(client: MlflowClient, experiment_id: str, name: str, tags: dict[str, str],
               start_ms: int) -> str:
    """A trial run (its params come with its first batch of metrics)."""
    run = client.create_run(experiment_id, run_name=name, tags=tags, start_time=start_ms)
    return str(run.info.run_id)


def open_parent_run(client: MlflowClient, experiment_id: str, name: str,
                    tags: Mapping[str, str], params: Mapping[str, Any],
                    resume_run_id: str | None, parent_run_id: str | None = None) -> str:
    """A study's parent run: reopened when resuming (unless it was deleted), else created."""
    from mlflow.exceptions import MlflowException

    if resume_run_id is not None:
        try:
            run = client.get_run(resume_run_id)
        except MlflowException:
            run = None
        if run is not None and run.info.lifecycle_stage != "deleted":
            client.update_run(resume_run_id, status="RUNNING")
            client.set_tag(resume_run_id, "resumed", "true")
            return resume_run_id
    return create_plain_run(client, experiment_id, name, {**tags, "tuner.role": "study"}, params,
                            parent_run_id)


# Said at the end of a study whose writer process was lost, or when such a study resumes.
ORPHAN_REASON = ("left open when the process writing it ended (its MLflow writer process was "
                 "killed, say)")


def end_orphaned_runs(client: MlflowClient, experiment_id: str, parent_run_id: str,
                      running: Sequence[int]) -> list[str]:
    """End (FAILED, with the reason) the trial runs under a study's parent run that are still
    RUNNING although their trials are not (`running`: the trial numbers that are): runs whose
    writer ended before it could end them. Their ids."""
    from mlflow.entities import RunTag

    ended = []
    for run in client.search_runs(
            [experiment_id], f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}' and "
            "tags.`tuner.role` = 'trial' and attributes.status = 'RUNNING'", max_results=1000):
        number = run.data.tags.get("trial_number")
        if number is not None and number.isdigit() and int(number) in running:
            continue  # another process trains it now
        client.log_batch(run.info.run_id, tags=[RunTag("state", "FAIL"),
                                                RunTag("fail_reason", ORPHAN_REASON)])
        client.set_terminated(run.info.run_id, "FAILED")
        ended.append(str(run.info.run_id))
    return ended


def create_plain_run(client: MlflowClient, experiment_id: str, name: str,
                     tags: Mapping[str, str], params: Mapping[str, Any],
                     parent_run_id: str | None = None) -> str:
    """A run with its params, nested under `parent_run_id` when given."""
    nested = {PARENT_RUN_TAG: parent_run_id} if parent_run_id else {}
    run = client.create_run(experiment_id, run_name=name, tags={**tags, **nested})
    run_id = str(run.info.run_id)
    if params:
        log_values(client, run_id, params=params)
    return run_id


def log_values(client: MlflowClient, run_id: str, metrics: Mapping[str, float] = {},
               tags: Mapping[str, Any] = {}, params: Mapping[str, Any] = {},
               step: int = 0) -> None:
    """One batch of metrics (at `step`, now), tags and params."""
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                     params=[Param(k, text(v)) for k, v in params.items()],
                     tags=[RunTag(k, text(v)) for k, v in tags.items()])


def experiment_of_run(client: MlflowClient, run_id: str) -> str | None:
    """The name of the experiment that holds `run_id` in this store; None if it is not there."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
        return str(client.get_experiment(run.info.experiment_id).name)
    except MlflowException:
        return None


def trial_run(client: MlflowClient, experiment_id: str, study: str, number: int) -> str | None:
    """The id of the run holding trial `number` of `study` in the experiment, if it is there."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.study = '{study}' and tags.trial_number = '{number}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    return str(runs[0].info.run_id) if runs else None


def end_run(client: MlflowClient, run_id: str, status: str) -> None:
    client.set_terminated(run_id, status=RUN_STATUS.get(status, status))


def run_data(client: MlflowClient, run_id: str) -> tuple[dict[str, str], dict[str, float]]:
    """A run's tags and latest metrics."""
    run = client.get_run(run_id)
    return dict(run.data.tags), dict(run.data.metrics)


def log_files(client: MlflowClient, run_id: str, files: Mapping[str, str | bytes],
              folder: str | None = None) -> None:
    """Each (file name -> content) pair as an artifact of the run."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            path = Path(tmp) / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        client.log_artifacts(run_id, tmp, folder)


def text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return redact(text)[:6000]
