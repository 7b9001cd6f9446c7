"""`tuner compare --jobs N`: studies side by side in processes of their own, with the results
they have one at a time; Ctrl-C stops them all, leaves no run open, and the command resumes."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import subprocess_env, tuner_command, write_space
from tests.helpers import load_study
from tests.services import training_trial
from tests.test_compare import _Recorder, runs
from tuner import load_space
from tuner.errors import TunerError
from tuner.execution import CompareOptions, run_comparison

# Trials that train for seconds, so that both studies are seen training at once.
SLOW = """\
name: sbs
data: {source: digits}
training: {max_epochs: 30, early_stopping: false}
study: {strategy: random, trials: 2, pruner: none, final: {top_k: 0}}
params:
  n_layers: 2
  units: 256
  lr: {type: float, low: 1e-4, high: 1e-3, log: true}
  batch_size: 8
"""


def test_studies_side_by_side_have_the_trials_they_have_one_at_a_time(
        workdir: Path, tracking_uri: str) -> None:
    space = load_space(write_space(workdir))
    results = {}
    for jobs in (1, 2):
        recorder = _Recorder()
        options = CompareOptions(strategies=("random", "tpe"), trials=3, repeats=1,
                                 name=f"jobs{jobs}", experiment=f"jobs{jobs}",
                                 storage=str(workdir / "s.journal"), tracking_uri=tracking_uri,
                                 out=str(workdir / f"out{jobs}"), log_model=False, views=False,
                                 pack=1, jobs=jobs)
        comparison = run_comparison(space, options, recorder)
        assert sorted(recorder.started) == [(f"jobs{jobs}-random-r0", 0, False),
                                            (f"jobs{jobs}-tpe-r0", 0, False)]
        assert sorted(recorder.ended) == [f"jobs{jobs}-random-r0", f"jobs{jobs}-tpe-r0"]
        assert sorted(recorder.trials) == [f"jobs{jobs}-random-r0"] * 3 + [f"jobs{jobs}-tpe-r0"] * 3
        assert ("studies ran 2 at a time: their times include each other's use of the machine"
                in comparison.notes) == (jobs == 2)
        found = runs(tracking_uri, f"jobs{jobs}")
        assert {r.info.status for r in found["comparison"] + found["study"] + found["trial"]} \
            == {"FINISHED"}
        assert (len(found["study"]), len(found["trial"])) == (2, 6)
        results[jobs] = {
            strategy: [(t.params, t.value, t.state) for t in load_study(
                f"jobs{jobs}-{strategy}-r0", workdir / "s.journal").trials]
            for strategy in ("random", "tpe")}
        pids = {t.system_attrs["tuner:heartbeat"]["pid"] for strategy in ("random", "tpe")
                for t in load_study(f"jobs{jobs}-{strategy}-r0", workdir / "s.journal").trials}
        assert (os.getpid() in pids) == (jobs == 1)  # --jobs 2: the studies ran elsewhere
    assert results[1] == results[2]


def test_jobs_need_a_storage_that_several_processes_can_write(workdir: Path,
                                                              tracking_uri: str) -> None:
    space = load_space(write_space(workdir))
    options = CompareOptions(strategies=("random",), trials=2, repeats=1,
                             storage=f"sqlite:///{workdir / 'optuna.db'}",
                             tracking_uri=tracking_uri, experiment="never-run", jobs=2)
    with pytest.raises(TunerError, match="--jobs 2 needs a storage that several processes can"):
        run_comparison(space, options)
    assert not (workdir / "optuna.db").exists() and not (workdir / "reports").exists()


def test_ctrl_c_stops_studies_running_side_by_side_and_the_command_resumes(
        workdir: Path, tracking_uri: str) -> None:
    space = write_space(workdir, SLOW, "sbs.yaml")
    args = [*tuner_command(), "compare", str(space), "--strategies", "random,tpe", "--repeats",
            "1", "--jobs", "2", "--no-model", "--no-views", "--pack", "1", "--experiment",
            "sbs", "--quiet"]
    proc = subprocess.Popen(args, cwd=workdir, env=subprocess_env(tracking_uri),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Both studies train at once, each in a process of its own (not the command's).
    training = [training_trial(str(workdir / "tuner.journal"), f"sbs-compare-{s}-r0", 0.3)
                for s in ("random", "tpe")]
    pids = {t.system_attrs["tuner:heartbeat"]["pid"] for t in training}
    assert len(pids) == 2 and proc.pid not in pids
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted; run the same command again" in err

    found = runs(tracking_uri, "sbs")
    assert [r.info.status for r in found["comparison"]] == ["KILLED"]
    assert {r.info.status for r in found["study"]} == {"KILLED"}
    assert "RUNNING" not in {r.info.status for r in found["trial"]}

    resumed = subprocess.run(args, cwd=workdir, env=subprocess_env(tracking_uri),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    found = runs(tracking_uri, "sbs")
    assert [r.info.status for r in found["comparison"]] == ["FINISHED"]
    assert {r.info.status for r in found["study"]} == {"FINISHED"}
    assert "RUNNING" not in {r.info.status for r in found["trial"]}
    for strategy in ("random", "tpe"):
        study = load_study(f"sbs-compare-{strategy}-r0", workdir / "tuner.journal")
        assert sum(t.state.name == "COMPLETE" for t in study.trials) == 2


def test_a_crowded_machine_is_said_before_the_studies_start() -> None:
    from tuner.execution._side_by_side import crowding_note

    note = crowding_note(2, 2)
    assert note is not None and note.startswith("--jobs 2 on 2 cores:")
    assert crowding_note(2, 8) is None and crowding_note(1, 1) is None
