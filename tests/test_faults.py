"""Faults with real processes and services: a run SIGKILLed on PostgreSQL, SIGTERM to two workers
on Redis, PostgreSQL connections killed and refused, a changed space. (A worker SIGKILLed among
two on the journal file: tests/test_parallel.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

import tuner
from tests.conftest import TINY_SPACE, custom_space, subprocess_env, tuner_command, write_space
from tests.helpers import load_study, runs_of
from tests.services import (  # noqa: F401  (pg_database and redis_url are fixtures)
    PASSWORD,
    SLOW_SPACE,
    allow_connections,
    drop_connections,
    open_study,
    pg_database,
    pg_trials,
    pg_url,
    redis_url,
    training_trial,
    trials_of,
    wait_for,
)
from tuner import RunOptions, TunerError, load_space, run_study
from tuner.search import (
    HEARTBEAT,
    Heartbeat,
    StorageUnavailable,
    StudyHandle,
    counted_trials,
    open_storage,
    reap_stale,
    trial_id,
)


def start(args: list[str], cwd: Path, uri: str) -> subprocess.Popen:
    return subprocess.Popen([*tuner_command(), *args], cwd=cwd, env=subprocess_env(uri),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_on_postgresql_is_recovered_by_the_next_run(
        workdir: Path, tracking_uri: str, pg_database: str) -> None:  # noqa: F811
    # Long enough (about 3 s on a 2.8 GHz core) to be found training before the kill.
    space = write_space(workdir, SLOW_SPACE.replace("max_epochs: 40", "max_epochs: 30"),
                        "slow.yaml")
    url = pg_url(pg_database)
    args = ["run", str(space), "--storage", url, "--trials", "1", "--heartbeat-timeout", "2",
            "--experiment", "kill-pg", "--no-model", "--no-refit", "--json", "--quiet",
            "--threads", "1", "--pack", "1"]
    proc = start(args, workdir, tracking_uri)
    victim = training_trial(url, "slowfault-random-seed0")
    proc.kill()  # SIGKILL: no handler runs, the trial stays RUNNING in the database
    proc.communicate(timeout=60)

    again = start(args, workdir, tracking_uri)
    out, err = again.communicate(timeout=400)
    assert again.returncode == 0, err
    assert PASSWORD not in out + err
    summary = json.loads(out)
    assert summary["n_complete"] == 1 and summary["n_failed"] == 0
    study = open_study(url, "slowfault-random-seed0")
    lost = study.trials[victim.number]
    assert lost.state == TrialState.FAIL and lost.user_attrs["requeued"]
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == victim.number)
    assert retry.state == TrialState.COMPLETE and retry.params == victim.params
    _, trials = runs_of(tracking_uri, "kill-pg")
    statuses = {int(r.data.tags["trial_number"]): r.info.status for r in trials}
    assert statuses[victim.number] == "FAILED"
    assert "RUNNING" not in statuses.values()


def test_a_lost_trial_is_retried_once_only(workdir: Path) -> None:
    storage = JournalStorage(JournalFileBackend(str(workdir / "reap.journal")))
    study = optuna.create_study(storage=storage, study_name="reap")
    handle = StudyHandle(study, storage.get_study_id_from_name("reap"), storage, True)

    def lose_one() -> optuna.Trial:
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        storage.set_trial_system_attr(trial_id(trial), HEARTBEAT,
                                      {"time": time.time() - 60, "host": "h", "pid": 1})
        return trial

    first = lose_one()
    assert reap_stale(handle, timeout=30) and reap_stale(handle, timeout=30) == []
    retry = study.ask()  # pops the queued retry, with the same parameter
    assert retry.suggest_float("x", 0, 1) == first.params["x"]
    storage.set_trial_system_attr(trial_id(retry), HEARTBEAT,
                                  {"time": time.time() - 60, "host": "h", "pid": 1})
    lost = reap_stale(handle, timeout=30)
    assert [(x.number, x.retry) for x in lost] == [(retry.number, False)]
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.FAIL]  # nothing queued a second time
    assert counted_trials(study) == 1  # the first loss was retried; the second counts as failed
    fresh = lose_one()
    storage.set_trial_system_attr(trial_id(fresh), HEARTBEAT,
                                  {"time": time.time(), "host": "h", "pid": 1})
    assert reap_stale(handle, timeout=30) == []  # alive: left alone


def test_sigterm_stops_two_workers_on_redis_runs_end_killed_and_the_study_resumes(
        workdir: Path, tracking_uri: str, redis_url: str) -> None:  # noqa: F811
    space = write_space(workdir, SLOW_SPACE.replace("max_epochs: 40", "max_epochs: 20"),
                        "slow.yaml")
    proc = start(["run", str(space), "--workers", "2", "--trials", "4", "--storage", redis_url,
                  "--experiment", "sigterm", "--no-model", "--quiet", "--pack", "1"], workdir,
                 tracking_uri)  # one trial at a time per worker: two trials in training
    storage = open_storage(redis_url)
    wait_for(lambda: sum(t.state == TrialState.RUNNING  # both workers in training
                         for t in trials_of(storage, "slowfault-random-seed0")) == 2,
             240, "two trials in training")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert "Traceback" not in err

    study = open_study(redis_url, "slowfault-random-seed0")
    assert len({t.system_attrs[HEARTBEAT]["pid"] for t in study.trials if t.state ==
                TrialState.FAIL}) == 2  # two worker processes, one Redis journal
    interrupted = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 2 and all(t.user_attrs["interrupted"] for t in interrupted)
    queued = [t for t in study.trials if t.state == TrialState.WAITING]
    assert sorted(t.user_attrs["retry_of"] for t in queued) == sorted(
        t.number for t in interrupted)
    parents, trials = runs_of(tracking_uri, "sigterm")
    assert [r.info.status for r in parents] == ["KILLED"]
    assert sorted(r.info.status for r in trials) == ["KILLED", "KILLED"]

    resumed = run_study(load_space(space), RunOptions(storage=redis_url, trials=2, tracking_uri=tracking_uri,
                                          experiment="sigterm", log_model=False, progress=False,
                                          views=False, threads=1, pack=1))
    assert resumed.n_complete == 2 and resumed.mlflow_parent_run_id == parents[0].info.run_id
    study = open_study(redis_url, "slowfault-random-seed0")
    for old in interrupted:
        retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == old.number)
        assert retry.state == TrialState.COMPLETE and retry.params == old.params


OUTAGE_SPACE = custom_space("outage", 8)


def test_postgresql_connections_killed_and_refused_for_seconds_are_waited_for(
        workdir: Path, tracking_uri: str, pg_database: str,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    url = pg_url(pg_database)
    outage_done = threading.Event()
    calls: list[int] = []

    def restore() -> None:
        allow_connections(pg_database, True)  # ...and comes back
        drop_connections(pg_database)  # the pool's connections are all dead now
        outage_done.set()

    def trainer(params: Any, reporter: Any) -> None:
        # The outage starts inside the third trial, so the study's next storage calls (this
        # trial's reports and result, the trials after it) certainly meet it: a study of tiny
        # trials can otherwise end before a watcher thread notices its first trial.
        calls.append(1)
        if len(calls) == 3:
            allow_connections(pg_database, False)  # the database goes away...
            drop_connections(pg_database)
            threading.Timer(3, restore).start()
        for epoch in range(1, reporter.max_epochs + 1):
            reporter.report(epoch, {"val_score": params["x"] * epoch})
        return

    space = tuner.parse_space(OUTAGE_SPACE)
    result = run_study(space, RunOptions(storage=url, trials=8, tracking_uri=tracking_uri,
                                         experiment="pg-outage", progress=False, views=False,
                                         threads=1), objective=trainer)
    assert outage_done.wait(timeout=60)
    assert (result.n_complete, result.n_failed) == (8, 0)
    study = open_study(url, "outage-random-seed0")
    assert len(study.trials) == 8
    assert all(t.state == TrialState.COMPLETE and t.value is not None for t in study.trials)
    assert "unreachable" in caplog.text and "postgres:***@" in caplog.text
    assert PASSWORD not in caplog.text


def test_a_longer_outage_fails_the_run_cleanly_without_the_password(
        workdir: Path, tracking_uri: str, pg_database: str) -> None:  # noqa: F811
    space = load_space(write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 30")))
    url = pg_url(pg_database)
    options = RunOptions(storage=url, trials=3, tracking_uri=tracking_uri, experiment="pg-down",
                         log_model=False, progress=False, views=False, threads=1,
                         storage_retry_s=2, heartbeat_timeout=1)

    def outage() -> None:
        wait_for(lambda: pg_trials(pg_database, "RUNNING") >= 1, 120, "a running trial")
        allow_connections(pg_database, False)
        drop_connections(pg_database)

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    with pytest.raises(StorageUnavailable) as failure:
        run_study(space, options)
    thread.join(timeout=30)
    message = str(failure.value)
    assert "unavailable" in message and "postgres:***@" in message
    assert PASSWORD not in message

    allow_connections(pg_database, True)
    study = open_study(url, "tiny-random-seed0")
    # Nothing half-written: every trial is finished with its outcome, or still RUNNING (and
    # then reaped by its heartbeat).
    for t in study.trials:
        assert t.state in (TrialState.COMPLETE, TrialState.RUNNING), t
        assert t.state != TrialState.COMPLETE or t.value is not None
    parents, trials = runs_of(tracking_uri, "pg-down")
    assert [r.info.status for r in parents] == ["FAILED"]
    assert "RUNNING" not in {r.info.status for r in trials}

    result = run_study(space, options)  # the next run reaps the stale trial and finishes
    assert (result.n_complete, result.n_failed) == (3, 0)
    study = open_study(url, "tiny-random-seed0")
    assert TrialState.RUNNING not in {t.state for t in study.trials}


def test_a_changed_space_is_refused_naming_it_unless_allowed_and_recorded(
        workdir: Path, tracking_uri: str) -> None:
    options = RunOptions(storage=str(workdir / "s.journal"), trials=1, tracking_uri=tracking_uri,
                         experiment="space-change", log_model=False, progress=False,
                         views=False, threads=1)
    run_study(load_space(write_space(workdir)), options)
    allow = replace(options, allow_space_change=True)
    choices = TINY_SPACE.replace("choices: [adam, sgd]", "choices: [adam, sgd, rmsprop]")
    with pytest.raises(TunerError, match=r"params\.optimizer\.choices: \['adam', 'sgd'\] -> "
                                         r"\['adam', 'sgd', 'rmsprop'\].*allow_space_change=True"):
        run_study(load_space(write_space(workdir, choices)), options)
    with pytest.raises(TunerError, match=r"even with allow_space_change=True: optimizer"):
        run_study(load_space(write_space(workdir, choices)), allow)  # Optuna cannot
    flipped = TINY_SPACE.replace("{metric: accuracy}", "{metric: accuracy, direction: minimize}")
    with pytest.raises(TunerError, match="direction"):
        run_study(load_space(write_space(workdir, flipped)), allow)
    wider = TINY_SPACE.replace("high: 1e-2", "high: 5e-2")
    with pytest.raises(TunerError, match=r"params\.lr\.high: 0\.01 -> 0\.05"):
        run_study(load_space(write_space(workdir, wider)), options)
    assert len(load_study("tiny-random-seed0", workdir / "s.journal").trials) == 1

    result = run_study(load_space(write_space(workdir, wider)), replace(allow, trials=2))
    assert result.n_complete == 2
    assert any("params.lr.high" in note for note in result.notes)
    study = load_study("tiny-random-seed0", workdir / "s.journal")
    log = study.user_attrs["tuner.space_changes"]
    assert len(log) == 1 and log[0]["changes"] == ["params.lr.high: 0.01 -> 0.05"]
    assert "high: 5e-2" in study.user_attrs["tuner.space_text"]
    parents, _ = runs_of(tracking_uri, "space-change")
    assert "params.lr.high" in parents[0].data.tags["space_changes"]


def test_a_trial_declared_lost_while_it_still_trains_keeps_one_outcome(
        workdir: Path, tracking_uri: str) -> None:
    """A worker so stalled that another one declared its trial lost: when it wakes up, its
    result is dropped (the retry is the trial's outcome) and its MLflow run ends FAILED."""
    # Slow enough (small batches, many epochs) that the trial still trains when it is reaped.
    space = load_space(write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 25")
                                   .replace("early_stopping: {patience: 2}", "early_stopping: false")
                                   .replace("batch_size: 128", "batch_size: 8")))
    journal = str(workdir / "study.journal")
    reaped: list = []

    def another_worker() -> None:
        storage = open_storage(journal)
        # A trial that has its parameters (sampled, recorded) and trains.
        trial = wait_for(lambda: next((t for t in trials_of(storage, "tiny-random-seed0")
                                       if t.state == TrialState.RUNNING and t.params
                                       and "params" in t.user_attrs), None), 120, "a trial")
        study = optuna.load_study(study_name="tiny-random-seed0", storage=storage)
        handle = StudyHandle(study, storage.get_study_id_from_name("tiny-random-seed0"), storage, False)
        reaped.extend(reap_stale(handle, timeout=-1))  # as if its heartbeat had stopped
        assert reaped and reaped[0].number == trial.number

    thread = threading.Thread(target=another_worker, daemon=True)
    thread.start()
    result = run_study(space, RunOptions(storage=journal, trials=2, tracking_uri=tracking_uri,
                                         experiment="lost-alive", log_model=False,
                                         progress=False, views=False, threads=1, pack=1))
    thread.join(timeout=60)
    assert len(reaped) == 1 and (result.n_complete, result.n_failed) == (2, 0)
    study = load_study("tiny-random-seed0", journal)
    lost = study.trials[reaped[0].number]
    assert lost.state == TrialState.FAIL and lost.value is None  # not overwritten by the result
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == lost.number)
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params
    _, trials = runs_of(tracking_uri, "lost-alive")
    runs = {int(r.data.tags["trial_number"]): r for r in trials}
    assert runs[lost.number].info.status == "FAILED"
    assert "declared lost" in runs[lost.number].data.tags["fail_reason"]


def test_a_heartbeat_that_cannot_reach_the_storage_says_so_once(
        pg_database: str, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    storage = open_storage(pg_url(pg_database), retry_s=0.0)
    study = optuna.create_study(storage=storage, study_name="beat")
    trial = study.ask()
    handle = StudyHandle(study, storage.get_study_id_from_name("beat"), storage, True)
    beat = Heartbeat(handle, trial_id(trial), interval=60)
    beat.beat()
    allow_connections(pg_database, False)
    drop_connections(pg_database)
    try:
        with caplog.at_level("WARNING", logger="tuner"):
            beat.beat()
            beat.beat()
    finally:
        allow_connections(pg_database, True)
    warnings = [r for r in caplog.records if "heartbeat" in r.getMessage()]
    assert len(warnings) == 1 and "declare this trial lost" in warnings[0].getMessage()
    assert "pw-" not in warnings[0].getMessage()  # the URL's password stays out


ORPHAN_SCRIPT = """
import os, sys, time
from tuner import RunOptions, parse_space, run_study
from tuner.tracking import prestart_writer

uri, folder, prestart = sys.argv[1], sys.argv[2], sys.argv[3] == "writer"
space = parse_space(sys.argv[4], file=folder + "/orphans.yaml")
if prestart:  # as `tuner run` does where a core is spare
    prestart_writer(uri, "orphans", False)
calls = []

def objective(params, reporter):
    calls.append(1)
    if len(calls) == 2:  # the second trial waits until its writer has been killed
        deadline = time.monotonic() + 120
        while not os.path.exists(folder + "/go") and time.monotonic() < deadline:
            time.sleep(0.05)
    return float(params["x"])

run_study(space, RunOptions(storage=folder + "/orphans.journal", study_name="orphans",
                            tracking_uri=uri, experiment="orphans", threads=1, progress=False,
                            views=False, log_model=False), objective=objective)
"""


def _serving_children(pid: int) -> list[int]:
    """The MLflow writer processes that process `pid` started."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"tuner.tracking._serve" in cmdline:
            found.append(int(child))
    return found


def _trial_runs(tracking_uri: str) -> list[Any]:
    try:
        return list(runs_of(tracking_uri, "orphans")[1])
    except AssertionError:  # no experiment yet
        return []


def test_a_killed_writer_leaves_no_run_open(workdir: Path, tracking_uri: str) -> None:
    """The writer process is the only one that knows the ids of the trial runs it created: if
    it is killed, the study's process writes the rest itself (saying so once) and ends the
    trial runs the writer had open, FAILED with the reason; a resumed study ends any such run
    that a process ending with its writer left behind."""
    space = custom_space("orphans", 4)
    args = [sys.executable, "-c", ORPHAN_SCRIPT, tracking_uri, str(workdir)]
    first = subprocess.Popen([*args, "writer", space], cwd=workdir, env=subprocess_env(
        tracking_uri), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(_trial_runs(tracking_uri)) >= 2, timeout=120,
                 what="the second trial's run")
        (writer,) = _serving_children(first.pid)
        os.kill(writer, signal.SIGKILL)
        (workdir / "go").touch()
        _, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, stderr
    assert stderr.count("the MLflow writer process ended unexpectedly") == 1, stderr
    parents, trials = runs_of(tracking_uri, "orphans")
    assert [r.info.status for r in parents] == ["FINISHED"]
    orphans = [r for r in trials if r.data.tags.get("fail_reason", "").startswith(
        "left open when the process writing it ended")]
    assert orphans and {r.info.status for r in orphans} == {"FAILED"}
    assert "RUNNING" not in {r.info.status for r in trials}
    study = load_study("orphans", workdir / "orphans.journal")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4  # the study is whole
    # The best trial's run, which only the killed writer knew by its id, was found in the store.
    by_number = {int(r.data.tags["trial_number"]): r.info.run_id for r in trials}
    assert study.user_attrs["tuner.best_run"]["run"] == by_number[study.best_trial.number]

    # A run left open (as by a process killed together with its writer) is ended when the
    # study resumes; one whose trial runs elsewhere is not.
    from mlflow import MlflowClient

    from tuner.tracking import Tracker

    client = MlflowClient(tracking_uri)
    parent, experiment = parents[0].info.run_id, parents[0].info.experiment_id

    def left_open(number: int) -> str:
        return str(client.create_run(experiment, tags={
            "mlflow.parentRunId": parent, "tuner.role": "trial", "trial_number": str(number),
            "study": "orphans"}).info.run_id)

    stale = left_open(1)
    again = subprocess.run([*args, "thread", space.replace("trials: 4", "trials: 5")],
                           cwd=workdir, env=subprocess_env(tracking_uri), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert client.get_run(stale).info.status == "FAILED"
    elsewhere = left_open(7)
    with Tracker(tracking_uri, "orphans") as tracker:
        assert tracker.end_orphaned_runs(parent, [7]) == []
        assert client.get_run(elsewhere).info.status == "RUNNING"
        assert tracker.end_orphaned_runs(parent, []) == [elsewhere]
    assert client.get_run(elsewhere).info.status == "FAILED"
