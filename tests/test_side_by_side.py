"""`tuner compare --jobs N`: studies side by side in processes of their own, with the results
they have one at a time; Ctrl-C stops them all, leaves no run open, and the command resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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
training: {max_epochs: 15, early_stopping: false}
study: {strategy: random, trials: 2, pruner: none, final: {top_k: 0}}
params:
  n_layers: 2
  units: 256
  lr: {type: float, low: 1e-4, high: 1e-3, log: true}
  batch_size: 8
"""


# A script as users write them: the comparison at its top level, no `if __name__ ==
# "__main__":` (multiprocessing would run it again in every study's process).
SCRIPT = """\
import json, sys
import tuner
from tuner.execution import CompareOptions, run_comparison

class Heard:
    def __init__(self):
        self.started, self.ended, self.trials = [], [], []
    def study_started(self, plan, done, skipped, best, pruned):
        self.started.append([plan.name, done, skipped])
    def trial_done(self, plan, state, value):
        self.trials.append(plan.name)
    def study_ended(self, plan):
        self.ended.append(plan.name)

heard = Heard()
comparison = run_comparison(tuner.load_space("tiny.yaml"), CompareOptions(**json.loads(
    sys.argv[1])), heard)
print(json.dumps({"started": heard.started, "ended": heard.ended, "trials": heard.trials,
                  "notes": list(comparison.notes)}))
"""


def test_studies_side_by_side_have_the_trials_they_have_one_at_a_time(
        workdir: Path, tracking_uri: str) -> None:
    write_space(workdir)
    results = {}
    for jobs in (1, 2):
        settings = {"strategies": ["random", "tpe"], "trials": 3, "repeats": 1,
                    "name": f"jobs{jobs}", "storage": str(workdir / "s.journal"),
                    "tracking_uri": tracking_uri, "out": str(workdir / f"out{jobs}"),
                    "log_model": False, "views": False, "pack": 1, "jobs": jobs}
        if jobs == 1:  # in this process
            recorder = _Recorder()
            comparison = run_comparison(load_space(workdir / "tiny.yaml"), CompareOptions(
                **{**settings, "strategies": ("random", "tpe")}), recorder)
            heard = {"started": [list(s) for s in recorder.started], "ended": recorder.ended,
                     "trials": recorder.trials, "notes": list(comparison.notes)}
        else:
            (workdir / "compare.py").write_text(SCRIPT)
            done = subprocess.run([sys.executable, "compare.py", json.dumps(settings)],
                                  cwd=workdir, capture_output=True, text=True, timeout=300,
                                  env=subprocess_env(tracking_uri))
            assert done.returncode == 0, done.stderr
            heard = json.loads(done.stdout.strip().splitlines()[-1])
        names = [f"jobs{jobs}-random-r0", f"jobs{jobs}-tpe-r0"]
        assert sorted(heard["started"]) == [[name, 0, False] for name in names]
        assert sorted(heard["ended"]) == names
        assert sorted(heard["trials"]) == [names[0]] * 3 + [names[1]] * 3
        assert ("studies ran 2 at a time: their times include each other's use of the machine"
                in heard["notes"]) == (jobs == 2)
        found = runs(tracking_uri, f"jobs{jobs}")
        assert {r.info.status for r in found["comparison"] + found["study"] + found["trial"]} \
            == {"FINISHED"}
        assert (len(found["study"]), len(found["trial"])) == (2, 6)
        studies = [load_study(name, workdir / "s.journal") for name in names]
        results[jobs] = [[(t.params, t.value, t.state) for t in s.trials] for s in studies]
        pids = {t.system_attrs["tuner:heartbeat"]["pid"] for s in studies for t in s.trials}
        assert (os.getpid() in pids) == (jobs == 1)  # --jobs 2: the studies ran elsewhere
    assert results[1] == results[2]


def test_jobs_need_a_storage_that_several_processes_can_write(workdir: Path,
                                                              tracking_uri: str) -> None:
    """Refused with the options, before anything starts (the CLI: before its imports)."""
    space = load_space(write_space(workdir))
    with pytest.raises(TunerError, match="--jobs 2 needs a storage that several processes can"):
        run_comparison(space, CompareOptions(
            strategies=("random",), trials=2, repeats=1, jobs=2,
            storage=f"sqlite:///{workdir / 'optuna.db'}", tracking_uri=tracking_uri,
            experiment="never-run"))
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


def test_a_python_objective_is_refused_where_other_processes_would_run_it(
        workdir: Path) -> None:
    """It lives in the caller's process: studies or trials elsewhere would not find it."""
    import tuner
    from tests.conftest import custom_space
    from tuner.execution import RunOptions

    space = load_space(write_space(workdir, custom_space("py", 2), "py.yaml"))
    for call, option in ((lambda: tuner.compare(space, CompareOptions(jobs=2),
                                                objective=lambda params, report: 0.0), "jobs"),
                         (lambda: tuner.run_study(space, RunOptions(workers=2),
                                                  objective=lambda params, report: 0.0),
                          "workers")):
        with pytest.raises(TunerError, match=f"^{option}: runs trials in other processes"):
            call()
    assert not (workdir / "tuner.journal").exists()


def test_study_processes_started_for_a_comparison_refused_late_are_ended(
        workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`tuner compare --jobs 2` starts its study processes before its heavy imports; input
    found bad after that (--out names a file) exits 2 and leaves none behind, and no writer
    process was started for it."""
    from tests.helpers import instances_made, writers_started
    from tuner.cli import main
    from tuner.execution import _side_by_side

    started = instances_made(monkeypatch, _side_by_side.StudyProcesses)
    writers = writers_started(monkeypatch)
    (workdir / "taken").write_text("a file, not a folder")
    code = main(["compare", str(write_space(workdir)), "--out", str(workdir / "taken"),
                 "--jobs", "2", "--experiment", "refused-late", "--tracking-uri", tracking_uri,
                 "--quiet"])
    assert code == 2 and "exists and is not a folder" in capsys.readouterr().err
    assert len(started) == 1 and writers == []
    procs = started[0]._procs
    assert len(procs) == 2 and all(p.exitcode is not None for p in procs)
    assert _side_by_side._prestarted is None


# The comparison's process, killed (SIGKILL) while its study processes wait for a study.
KILLED_PARENT = """\
import time
from tuner import load_space
from tuner.execution import CompareOptions
from tuner.execution._options import Preparation
from tuner.execution._side_by_side import StudyProcesses

processes = StudyProcesses(2, Preparation.of(load_space("tiny.yaml"), CompareOptions(jobs=2)))
print(" ".join(str(proc.pid) for proc in processes._procs), flush=True)
time.sleep(600)
"""


def test_study_processes_end_when_the_comparisons_process_is_killed(workdir: Path) -> None:
    """Nothing else would end them: they would wait for a study forever."""
    write_space(workdir)
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT], cwd=workdir,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(pids) == 2
    parent.kill()
    parent.wait()

    def running() -> list[int]:
        found = []
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
                    found.append(pid)
            except FileNotFoundError:
                pass
        return found

    deadline = time.monotonic() + 60
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = running()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []
