"""What a command pays around its trials: the garbage collector paused while `tuner run` imports,
a model unpickled without the training stack, the writer process only where a core is idle."""

from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest

from tests.conftest import REPO, TINY_SPACE, write_space
from tests.helpers import runs_of
from tuner import _collector
from tuner.cli import main
from tuner.errors import TunerError


@pytest.fixture
def restored_collector() -> Any:
    """Each test leaves the collector as it found it (on, nothing frozen by it)."""
    yield
    _collector.resume()
    gc.unfreeze()
    gc.enable()


def test_resume_does_nothing_unless_pause_paused_the_collector(restored_collector: Any) -> None:
    gc.unfreeze()
    _collector.resume()  # a library caller's collector: left alone
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()  # the caller's own choice is kept, too
    _collector.pause()
    _collector.resume()
    assert not gc.isenabled() and gc.get_freeze_count() == 0
    gc.enable()
    _collector.pause()
    assert not gc.isenabled() and _collector.paused()
    _collector.resume()
    assert gc.isenabled() and gc.get_freeze_count() > 0 and not _collector.paused()


def _watch(monkeypatch: pytest.MonkeyPatch, module: Any, name: str,
           seen: dict[str, tuple[bool, bool]], when: str) -> None:
    """Record, as `module.name` is called: (collector on, anything frozen)."""
    original = getattr(module, name)

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen[when] = (gc.isenabled(), gc.get_freeze_count() > 0)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, watched)


def test_tuner_run_imports_without_the_collector_and_trains_with_it(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, restored_collector: Any) -> None:
    from tuner.execution import _run

    seen: dict[str, tuple[bool, bool]] = {}
    _watch(monkeypatch, _run, "load_dataset", seen, "setup")
    _watch(monkeypatch, _run, "_drive", seen, "trials")
    gc.unfreeze()
    space = write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 1"))
    assert main(["run", str(space), "--trials", "1", "--no-tracking", "--quiet", "--threads",
                 "1"]) == 0
    assert seen == {"setup": (False, False), "trials": (True, True)}
    assert gc.isenabled()

    def bad_data(*args: Any, **kwargs: Any) -> Any:
        assert not gc.isenabled()
        raise TunerError("data: no such file")

    monkeypatch.setattr(_run, "load_dataset", bad_data)  # a run that fails before its trials
    assert main(["run", str(space), "--no-tracking", "--quiet"]) == 2
    assert gc.isenabled() and not _collector.paused()


def test_tuner_worker_imports_without_the_collector_and_trains_with_it(
        workdir: Path, monkeypatch: pytest.MonkeyPatch, restored_collector: Any) -> None:
    from tuner.execution import _join

    space = write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 1"))
    journal = str(workdir / "joined.journal")
    assert main(["run", str(space), "--trials", "1", "--storage", journal, "--no-tracking",
                 "--quiet", "--threads", "1"]) == 0
    seen: dict[str, tuple[bool, bool]] = {}
    _watch(monkeypatch, _join, "open_job", seen, "setup")
    _watch(monkeypatch, _join, "work", seen, "trials")
    gc.unfreeze()
    assert main(["worker", "--storage", journal, "--study", "tiny-random-seed0", "--trials", "2",
                 "--no-tracking", "--quiet", "--threads", "1"]) == 0
    assert seen == {"setup": (False, False), "trials": (True, True)}
    assert gc.isenabled()


def test_a_logged_model_unpickles_without_the_training_loop_or_scikit_learn(
        tmp_path: Path) -> None:
    """The writer process unpickles the study's final model to log it: that must import the
    model's classes only, not the training stack (scikit-learn alone is a second or more)."""
    from tuner.space import TrialConfig
    from tuner.training import Ensemble, ScoringModel, build_mlp

    config = TrialConfig.from_params({"n_layers": 1, "units": 8, "activation": "relu"})
    members = [build_mlp(config, 4, 3) for _ in range(2)]
    model = ScoringModel(Ensemble(members, "classification"), np.zeros(4), np.ones(4),
                         "classification")
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    code = ("import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read()); "
            "print(sorted(m for m in sys.modules if m.startswith(('sklearn', 'tuner.data', "
            "'tuner.training._train', 'tuner.training._pack', 'mlflow'))))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=tmp_path, text=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_busy_machine_has_no_spare_core_for_the_writer_process() -> None:
    """Whether `tuner run` starts a writer process is decided on the tasks running now, not
    on the load average (which, just after a study, remembers that study's own load)."""
    from tuner.tracking._writer import others_running, spare_core

    cores = os.cpu_count() or 1
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(max(1, cores - 1))]
    try:
        time.sleep(0.5)
        assert others_running() >= len(spinners)
        assert not spare_core(1)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def test_this_process_s_own_threads_are_not_another_process_s_work() -> None:
    """numpy's import starts a BLAS thread that spins for a while: it is this process's work.
    Counted as another task, it made every study started right after the imports (`tuner run`,
    a script) write from a thread on an idle 2-core machine."""
    import hashlib
    import threading

    from tuner.tracking._writer import others_running

    done = threading.Event()

    def spin() -> None:  # hashing a large buffer runs without the interpreter lock
        data = bytes(1 << 22)
        while not done.is_set():
            hashlib.sha256(data).digest()

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        assert min(others_running() for _ in range(5)) < 1
    finally:
        done.set()
        spinner.join()


@pytest.mark.parametrize("command", [["run", "--trials", "1"],
                                     ["compare", "--strategies", "random,tpe", "--trials", "2"]])
def test_the_writer_process_starts_before_optuna_loads(workdir: Path, command: list[str]) -> None:
    """The writer's imports (MLflow's) are what a new study waits for first: `tuner run` and
    `tuner compare` start it as soon as their options are checked, before Optuna (and Redis's
    client) or torch load."""
    space = write_space(workdir)
    code = (
        "import sys\n"
        "import tuner.tracking._pool as pool, tuner.tracking._writer as writer\n"
        "writer.spare_core = lambda threads: True\n"  # a busy machine would start none
        "def started(*args, **kwargs):\n"
        "    loaded = [m for m in ('optuna', 'redis', 'torch', 'mlflow') if m in sys.modules]\n"
        "    print('LOADED', loaded)\n"
        "    raise SystemExit(0)\n"
        "pool.ProcessWriter = started\n"
        "from tuner.cli import main\n"
        "main(sys.argv[1:])\n")
    out = subprocess.run([sys.executable, "-c", code, command[0], str(space), *command[1:]],
                         cwd=workdir, text=True, capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "LOADED []", out.stdout + out.stderr[-500:]


KEPT_WRITER_SCRIPT = """
import dataclasses, json, os, sys
import tuner.tracking._writer as writer
writer.spare_core = lambda threads: True  # a busy machine would start none
import tuner
from tuner.tracking import _pool
seen = []
def study(name, views=False):
    options = tuner.RunOptions(trials=2, tracking_uri=sys.argv[2], study_name=name,
        experiment='no-mlflow-here', threads=1, progress=False, views=views)
    result = tuner.run_study(tuner.load_space(sys.argv[1]), options)
    kept = _pool._kept[1]._process.pid if _pool._kept else None
    seen.append([result.n_complete, result.model_uri is not None, kept,
                 'mlflow' in sys.modules, 'sklearn' in sys.modules])
study('first', views=True)   # a fresh process: a writer starts before torch loads
study('second')              # torch is loaded: the kept writer serves it
os.mkdir('elsewhere'); os.chdir('elsewhere')
study('third')               # another folder: not the kept writer's store; a new writer
import mlflow
study('fourth')              # MLflow loaded here: the kept writer still serves its store
os.mkdir('third'); os.chdir('third')
study('fifth')               # neither kept for this folder nor worth starting: a thread
print(json.dumps(seen))
"""


def test_a_script_s_studies_share_one_kept_writer_and_import_no_mlflow(
        workdir: Path, tracking_uri: str) -> None:
    """A study run from a fresh process (`tuner run`, a script, a notebook's first study) hands
    every MLflow call to a writer process that `run_study` starts before torch loads: the runs,
    the summary and the model are all there, and the study's process never imported MLflow.
    Nor, on numeric data, scikit-learn: not for the splits, nor for the views page's
    importances. The writer is kept: the script's next study (torch loaded now) uses it too.
    In another working folder (where MLflow's default store would be another) it is not used,
    but ended, and a new one starts; in a process that holds MLflow, a kept writer is used but
    none is started (a thread writes)."""
    space = write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 2"))
    out = subprocess.run([sys.executable, "-c", KEPT_WRITER_SCRIPT, str(space), tracking_uri],
                         cwd=workdir, text=True, capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert out.returncode == 0, out.stderr
    first, second, third, fourth, fifth = json.loads(out.stdout.strip().splitlines()[-1])
    assert first[:2] == second[:2] == third[:2] == fourth[:2] == fifth[:2] == [2, True]
    assert first[2] is not None and second[2] == first[2]
    assert third[2] not in (None, first[2]) and fourth[2] == third[2] and fifth[2] is None
    assert first[3:] == [False, False] and second[3] is third[3] is False
    assert not Path(f"/proc/{first[2]}").exists()  # ended when the third study did not use it
    assert not Path(f"/proc/{third[2]}").exists()  # and the third's when the fifth did not
    parents, trials = runs_of(tracking_uri, "no-mlflow-here")
    assert [r.info.status for r in parents] == ["FINISHED"] * 5 and len(trials) == 10
    assert {t.info.status for t in trials} == {"FINISHED"}
    assert all("model_uri" in p.data.tags and "test_accuracy" in p.data.metrics
               for p in parents)
    first_run = next(p for p in parents if p.info.run_name == "first")
    client = mlflow.MlflowClient(tracking_uri)
    artifacts = client.list_artifacts(first_run.info.run_id, "views")
    assert "views/views.html" in [a.path for a in artifacts]
    page = Path(client.download_artifacts(first_run.info.run_id, "views/views.html",
                                          str(workdir))).read_text()
    assert "Parameter importances (PED-ANOVA)" in page


FINAL_WRITER_SCRIPT = """
import json, sys
import tuner.tracking._writer as writer
writer.spare_core = lambda threads: True  # a busy machine would start none
import tuner
from tuner.tracking import _pool
options = tuner.FinalOptions(tracking_uri=sys.argv[2], threads=1)
if sys.argv[3] == 'evaluate':
    result = tuner.evaluate(sys.argv[1], 'study.journal', options)
else:
    result = tuner.train(tuner.load_space(sys.argv[1]), options)
print(json.dumps([result.mlflow_run_id, result.model_uri is not None,
                  _pool._kept is not None, 'mlflow' in sys.modules]))
"""


def test_a_final_model_is_logged_by_a_writer_process_and_imports_no_mlflow(
        workdir: Path, tracking_uri: str) -> None:
    """`tuner evaluate` and `tuner train` (and `tuner.evaluate`, `tuner.train`) start a writer
    process beside their imports, which prepares model logging while the model trains and then
    writes its run: nested under the study's parent run (found there too), with its model and
    artifacts; the process itself never imports MLflow."""
    import tuner

    space = write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 2"))
    study = tuner.run_study(tuner.load_space(space), tuner.RunOptions(
        trials=2, storage=str(workdir / "study.journal"), tracking_uri=tracking_uri,
        experiment="final-here", threads=1, progress=False, views=False, log_model=False))
    tuner.export(study.study, workdir / "best.yaml", str(workdir / "study.journal"))
    seen = {}
    for command, target in (("evaluate", study.study), ("train", str(workdir / "best.yaml"))):
        out = subprocess.run([sys.executable, "-c", FINAL_WRITER_SCRIPT, target, tracking_uri,
                              command], cwd=workdir, text=True, capture_output=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
        assert out.returncode == 0, out.stderr
        seen[command] = json.loads(out.stdout.strip().splitlines()[-1])
        assert seen[command][1:] == [True, True, False], command  # model; kept; no MLflow here
    client = mlflow.MlflowClient(tracking_uri)
    evaluated = client.get_run(seen["evaluate"][0])
    assert evaluated.data.tags["mlflow.parentRunId"] == study.mlflow_parent_run_id
    assert client.get_experiment(evaluated.info.experiment_id).name == "final-here"
    trained = client.get_run(seen["train"][0])
    for run in (evaluated, trained):
        assert run.info.status == "FINISHED" and run.data.tags["tuner.role"] == "final"
        assert "model_uri" in run.data.tags and "test_accuracy" in run.data.metrics
        paths = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"confusion_matrix.png", "confusion_matrix.csv", "space.yaml"} <= paths


def test_the_tuner_command_leaves_no_writer_process_behind(workdir: Path) -> None:
    """`tuner run` ends with a quick `os._exit`, where exit handlers do not run: the writer it
    kept for a next study (there is none) has been closed by then, not left to find out."""
    space = write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 1"))
    code = ("import os, sys\n"
            "import tuner.tracking._writer as writer\n"
            "writer.spare_core = lambda threads: True\n"  # a busy machine would start none
            "started = []\n"
            "init = writer.ProcessWriter.__init__\n"
            "def counted(self, *args, **kwargs):\n"
            "    init(self, *args, **kwargs)\n"
            "    started.append(self)\n"
            "writer.ProcessWriter.__init__ = counted\n"
            "quick_exit = os._exit\n"
            "def exit_seen(code):\n"
            "    print('WRITERS', [w._process.poll() for w in started], flush=True)\n"
            "    quick_exit(code)\n"
            "os._exit = exit_seen\n"
            "from tuner.cli import entry\n"
            "sys.argv[1:] = ['run', sys.argv[1], '--trials', '1', '--quiet', '--no-model']\n"
            "entry()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run([sys.executable, "-c", code, str(space)], cwd=workdir, text=True,
                          capture_output=True, env={**env, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "WRITERS [0]"  # one, and it has exited
    parents, trials = runs_of(f"sqlite:///{workdir / 'mlflow.db'}", "tiny")
    assert [r.info.status for r in parents] == ["FINISHED"] and len(trials) == 1


def test_a_bad_store_is_refused_by_the_writer_process_as_it_is_here(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's check runs in the writer process, with the same one-line error (exit code
    2 from the CLI) as in this process, before the study exists; the refused study's writer
    process is ended."""
    import tuner
    from tuner.tracking import StoreError, _pool, _writer
    from tuner.tracking._check import check_store as check_here

    space = tuner.load_space(write_space(workdir, TINY_SPACE))
    blocked = workdir / "blocked"
    blocked.write_text("a file, not a folder")
    uri = f"sqlite:///{blocked}/mlflow.db"
    with pytest.raises(StoreError) as here:
        check_here(uri, "refused")
    asked: list[object] = []
    check = _writer.ProcessWriter.check
    monkeypatch.setattr(_writer.ProcessWriter, "check",
                        lambda writer, *args: asked.append(args) or check(writer, *args))
    _pool.prestart(uri, "refused", False)
    writer = _pool.prestarted_for(uri, "refused")
    try:
        with pytest.raises(StoreError) as there:
            tuner.run_study(space, tuner.RunOptions(
                tracking_uri=uri, experiment="refused", storage=str(workdir / "s.journal"),
                threads=1, progress=False))
        assert asked and writer is not None  # the check ran in the writer process
        assert not _pool.prestarted() and not writer.alive()  # which the refusal ended
    finally:
        _pool.discard_prestarted()
    assert str(there.value) == str(here.value) and "\n" not in str(there.value)
    assert str(there.value).startswith("tracking store sqlite:///")
    assert not (workdir / "s.journal").exists()


def test_the_writer_process_masks_passwords_in_what_it_logs(tmp_path: Path) -> None:
    """The writer process checks the store and talks to it: what MLflow or SQLAlchemy log
    there goes to the user's terminal, with passwords masked as in the study's process."""
    code = (
        "import logging, os\n"
        "from multiprocessing.connection import Connection\n"
        "from tuner.tracking._child import serve\n"
        "requests, sender = os.pipe(); os.close(sender)  # the parent is gone at once\n"
        "_, replies = os.pipe()\n"
        "serve(None, Connection(requests, writable=False), Connection(replies, readable=False),"
        " warm_up=False)\n"
        "logging.getLogger('mlflow').warning('cannot reach postgresql://tuner:hunter2@db/x')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, text=True,
                         capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "postgresql://tuner:***@db/x" in out.stderr and "hunter2" not in out.stderr
