"""Across machines, with real services: PostgreSQL with an MLflow tracking server (and a worker
joining from another folder, without the space file), and a Dask LocalCluster. (Two workers on
Redis: tests/test_faults.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import psycopg2
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.conftest import subprocess_env, tuner_command, write_space
from tests.services import (  # noqa: F401  (fixtures)
    PASSWORD,
    PG,
    SLOW_SPACE,
    mlflow_server,
    open_study,
    pg_database,
    pg_url,
    training_trial,
)
from tuner import RunOptions, load_space, run_study
from tuner.search import HEARTBEAT

MEDIUM_SPACE = """\
name: medium
data: {source: digits}
training: {max_epochs: 3, early_stopping: false}
study: {strategy: random, trials: 4, pruner: none}
params:
  n_layers: {type: int, low: 1, high: 2}
  units: {type: int, low: 64, high: 128, per_layer: n_layers}
  lr: {type: float, low: 1e-3, high: 1e-2, log: true}
  batch_size: 16
"""


def tuner(args: list[str], cwd: Path, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run([*tuner_command(), *args], cwd=cwd, env=subprocess_env(uri),
                          capture_output=True, text=True, timeout=400)


def test_workers_on_postgresql_log_under_one_parent_run_on_a_tracking_server(
        workdir: Path, tmp_path_factory: pytest.TempPathFactory, mlflow_server: str,  # noqa: F811
        pg_database: str) -> None:  # noqa: F811
    space = write_space(workdir, MEDIUM_SPACE, "medium.yaml")
    url = pg_url(pg_database)
    first = tuner(["run", str(space), "--storage", url, "--study", "shared", "--workers", "2",
                   "--trials", "2", "--tracking-uri", mlflow_server, "--experiment", "pg-server",
                   "--no-model", "--json"], workdir, mlflow_server)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert (summary["n_complete"], summary["n_failed"]) == (2, 0)

    # Another host: no space file, only the storage URL and the study name.
    elsewhere = tmp_path_factory.mktemp("other-host")
    joined = tuner(["worker", "--storage", url, "--study", "shared", "--trials", "3",
                    "--tracking-uri", mlflow_server, "--json"], elsewhere, mlflow_server)
    assert joined.returncode == 0, joined.stderr
    assert json.loads(joined.stdout)["n_complete"] == 3

    study = open_study(url, "shared")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    pids = [t.system_attrs[HEARTBEAT]["pid"] for t in study.trials]
    assert len(set(pids[:2])) == 2 and pids[2] not in pids[:2]  # 2 workers, then the joiner

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("pg-server")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("tuner.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("tuner.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.run_id == summary["mlflow_parent_run_id"]
    assert sorted(int(r.data.tags["trial_number"]) for r in trials) == [0, 1, 2]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parents[0].info.run_id}
    assert {r.info.status for r in trials} == {"FINISHED"}

    # The password is nowhere: outputs, MLflow params and tags, Optuna attributes.
    texts = [first.stdout, first.stderr, joined.stdout, joined.stderr]
    texts += [json.dumps([r.data.params, r.data.tags]) for r in runs]
    with closing(psycopg2.connect(dbname=pg_database, **PG)) as conn, conn.cursor() as cur:
        for table in ("study_user_attributes", "study_system_attributes",
                      "trial_user_attributes", "trial_system_attributes"):
            cur.execute(f"SELECT value_json FROM {table}")
            texts += [row[0] for row in cur.fetchall()]
    assert "postgres:***@" in first.stdout
    assert not [t for t in texts if PASSWORD in t]


def test_trials_run_as_tasks_on_a_dask_local_cluster_stop_on_ctrl_c_and_resume(
        workdir: Path, tracking_uri: str) -> None:
    from distributed import Client, LocalCluster

    # Many short epochs (150 of 135 steps; a trial trains for seconds even on a fast machine,
    # and 40 epochs took under the 1 s `training_trial` waits for): Ctrl-C lands in the middle
    # of a trial, which stops at an epoch's end.
    space = load_space(write_space(workdir, SLOW_SPACE.replace("units: 256", "units: 64")
                                   .replace("max_epochs: 40", "max_epochs: 150"), "slow.yaml"))
    journal = str(workdir / "dask.journal")  # a file system every Dask worker shares
    options = RunOptions(storage=journal, trials=2, tracking_uri=tracking_uri, experiment="dask",
                         log_model=False, progress=False, views=False)

    def ctrl_c_while_training() -> None:
        training_trial(journal, "slowfault-random-seed0")
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C on the client

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        options = replace(options, dask=cluster.scheduler_address)
        threading.Thread(target=ctrl_c_while_training, daemon=True).start()
        first = run_study(space, options)
        assert first.interrupted and any("Dask cluster" in note for note in first.notes)
        second = run_study(space, options)
    assert not second.interrupted and (second.n_complete, second.n_failed) == (2, 0)

    study = open_study(journal, second.study)
    assert TrialState.RUNNING not in {t.state for t in study.trials}
    stopped_trials = [t for t in study.trials if t.state == TrialState.FAIL]
    assert stopped_trials  # stopped in the middle, on the Dask workers
    for stopped in stopped_trials:
        assert stopped.user_attrs["interrupted"]  # stopped at an epoch's end, queued again
        retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == stopped.number)
        assert retry.state == TrialState.COMPLETE and retry.params == stopped.params
    pids = {t.system_attrs[HEARTBEAT]["pid"] for t in study.trials}
    assert pids <= worker_pids and len(pids) == 2  # on the cluster's workers, both of them

    runs = MlflowClient(tracking_uri).search_runs(
        [MlflowClient(tracking_uri).get_experiment_by_name("dask").experiment_id])
    trials = [r for r in runs if r.data.tags.get("tuner.role") == "trial"]
    assert len(trials) == len(study.trials)
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {second.mlflow_parent_run_id}
    assert "RUNNING" not in {r.info.status for r in runs}
