"""Several worker processes on one machine: a grid exactly once on the journal file although a
worker is SIGKILLed, SQLite refused, torch threads shared, and samplers that never repeat
another worker's draws."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from tests.conftest import subprocess_env, tuner_command, write_space
from tests.helpers import load_study, runs_of
from tests.services import SLOW_SPACE, training_trial
from tuner import RunOptions, StorageError, load_space, run_study
from tuner.execution import threads_per_worker
from tuner.search import HEARTBEAT, TRIAL_PARAMS, seeded_sampler


def test_two_workers_run_a_grid_exactly_once_even_when_one_is_killed_mid_trial(
        workdir: Path, tracking_uri: str) -> None:
    """Two worker processes on the journal file share a grid; one is SIGKILLed in the middle of
    a trial: its trial is failed after the heartbeat timeout and retried once, with the same
    point, by the other; every point ends COMPLETE exactly once; a rerun adds nothing."""
    # 30 epochs: a trial trains for about 3 s, long enough to be seen training and killed.
    space = write_space(workdir, SLOW_SPACE.replace("max_epochs: 40", "max_epochs: 30")
                        .replace("strategy: random", "strategy: grid"), "slow.yaml")
    journal = str(workdir / "study.journal")
    proc = subprocess.Popen(
        [*tuner_command(), "run", str(space), "--workers", "2", "--storage", journal,
         "--heartbeat-timeout", "4", "--experiment", "parallel-grid", "--no-model", "--json",
         "--quiet", "--pack", "1"], cwd=workdir, env=subprocess_env(tracking_uri), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    victim = training_trial(journal, "slowfault-grid-seed0")
    pid = victim.system_attrs[HEARTBEAT]["pid"]
    assert pid != proc.pid  # a worker process, not the parent
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err
    assert "database is locked" not in err
    summary = json.loads(out)
    grid = load_space(space).params.grid()
    assert (summary["n_complete"], summary["n_failed"]) == (len(grid), 0) == (3, 0)
    assert any("SIGKILL" in note for note in summary["notes"])

    study = load_study(summary["study"], journal)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    seen = sorted(json.dumps(t.user_attrs[TRIAL_PARAMS], sort_keys=True) for t in complete)
    assert seen == sorted(json.dumps(p, sort_keys=True) for p in grid)  # each point once
    lost = study.trials[victim.number]
    assert lost.state == TrialState.FAIL and lost.user_attrs["lost"]
    assert "no heartbeat" in lost.user_attrs["fail_reason"]
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == victim.number)
    assert retry.state == TrialState.COMPLETE and retry.params == victim.params
    assert retry.system_attrs[HEARTBEAT]["pid"] != pid  # the other worker took it over
    assert len(study.trials) == len(grid) + 1
    assert len({t.system_attrs[HEARTBEAT]["pid"] for t in study.trials}) == 2

    parents, trials = runs_of(tracking_uri, "parallel-grid")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parents[0].info.run_id}
    by_number = {int(r.data.tags["trial_number"]): r for r in trials}
    assert by_number[victim.number].info.status == "FAILED"  # not RUNNING forever
    assert "worker lost" in by_number[victim.number].data.tags["fail_reason"]
    assert {r.info.status for n, r in by_number.items() if n != victim.number} == {"FINISHED"}
    # The workers trained every trial: the parent process found the best one's run in the store.
    best = study.best_trial.number
    assert study.user_attrs["tuner.best_run"] == {
        "trial": best, "run": by_number[best].info.run_id, "parent": parents[0].info.run_id}

    again = run_study(load_space(space), RunOptions(
        storage=journal, tracking_uri=tracking_uri, experiment="parallel-grid", workers=2,
        log_model=False, progress=False, views=False))
    assert len(load_study(summary["study"], journal).trials) == len(grid) + 1  # adds nothing
    assert again.mlflow_parent_run_id == parents[0].info.run_id


def test_sqlite_with_several_workers_is_refused_before_anything_is_written(
        workdir: Path, tracking_uri: str) -> None:
    space = load_space(write_space(workdir))
    with pytest.raises(StorageError, match=r"database is locked.*journal file"):
        run_study(space, RunOptions(storage="sqlite:///study.db", workers=2,
                                    tracking_uri=tracking_uri, experiment="sqlite-refused"))
    assert not (workdir / "study.db").exists()
    assert MlflowClient(tracking_uri).get_experiment_by_name("sqlite-refused") is None


def test_workers_share_the_cores_for_torch_threads() -> None:
    cores = os.cpu_count() or 1
    for workers in (1, 2, cores, cores + 1):
        threads, _ = threads_per_worker(None, workers)
        assert threads >= 1 and (threads * workers <= cores or threads == 1)
    threads, note = threads_per_worker(cores, 2)
    assert threads * 2 <= max(cores, 2) and note is not None and "exceeds" in note
    assert threads_per_worker(1, 1) == (1, None)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_two_processes_asking_in_turn_never_draw_each_others_parameters(workdir: Path) -> None:
    """Two hosts joining one study build the same seeded sampler: their draws must still differ,
    and trial N must get the same parameters as in a study run by one process."""
    def ask_all(studies: list[optuna.Study], n: int) -> list[tuple[float, str]]:
        for i in range(n):
            study = studies[i % len(studies)]
            trial = study.ask()
            trial.suggest_float("x", 0, 1)
            trial.suggest_categorical("c", ["a", "b", "c", "d"])
            study.tell(trial, trial.number)
        trials = studies[0].get_trials(deepcopy=False)
        assert all(t.state == TrialState.COMPLETE for t in trials)
        return [(t.params["x"], t.params["c"]) for t in trials]

    def studies(path: Path, name: str, count: int) -> list[optuna.Study]:
        storage = JournalStorage(JournalFileBackend(str(path)))
        first = optuna.create_study(storage=storage, study_name=name,
                                    sampler=seeded_sampler("tpe", 3))
        return [first] + [optuna.load_study(study_name=name, storage=storage,
                                            sampler=seeded_sampler("tpe", 3))
                          for _ in range(count - 1)]

    two = ask_all(studies(workdir / "two.journal", "two", 2), 12)
    one = ask_all(studies(workdir / "one.journal", "one", 1), 12)
    assert len(set(two)) == 12
    assert two == one
