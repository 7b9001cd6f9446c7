"""What a command pays around its trials: the garbage collector paused while `tuner run` imports,
a model unpickled without the training stack, the writer process only where a core is idle."""

from __future__ import annotations

import gc
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


@pytest.mark.parametrize("command", [["run", "--trials", "1"],
                                     ["compare", "--strategies", "random,tpe", "--trials", "2"]])
def test_the_writer_process_starts_before_optuna_loads(workdir: Path, command: list[str]) -> None:
    """The writer's imports (MLflow's) are what a new study waits for first: `tuner run` and
    `tuner compare` start it as soon as their options are checked, before Optuna (and Redis's
    client) or torch load."""
    space = write_space(workdir)
    code = (
        "import sys\n"
        "import tuner.tracking._writer as writer\n"
        "writer.spare_core = lambda threads: True\n"  # a busy machine would start none
        "def prestart(*args, **kwargs):\n"
        "    loaded = [m for m in ('optuna', 'redis', 'torch', 'mlflow') if m in sys.modules]\n"
        "    print('LOADED', loaded)\n"
        "    raise SystemExit(0)\n"
        "writer.prestart = prestart\n"
        "from tuner.cli import main\n"
        "main(sys.argv[1:])\n")
    out = subprocess.run([sys.executable, "-c", code, command[0], str(space), *command[1:]],
                         cwd=workdir, text=True, capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "LOADED []", out.stdout + out.stderr[-500:]


def test_a_study_in_a_fresh_process_logs_through_a_writer_and_imports_no_mlflow(
        workdir: Path, tracking_uri: str) -> None:
    """A study run from a fresh process (`tuner run`, a script, a notebook's first study) hands
    every MLflow call to a writer process that `run_study` starts before torch loads: the runs,
    the summary and the model are all there, and the study's process never imported MLflow.
    Nor, on numeric data, scikit-learn: not for the splits, nor for the views page's
    importances. A second study in the same process (torch loaded now) writes from a thread."""
    space = write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 2"))
    code = (
        "import dataclasses, sys\n"
        "import tuner.tracking._writer as writer\n"
        "writer.spare_core = lambda threads: True\n"  # a busy machine would start none
        "import tuner\n"
        "options = tuner.RunOptions(trials=2, tracking_uri=sys.argv[2],\n"
        "    experiment='no-mlflow-here', threads=1, progress=False, views=True)\n"
        "result = tuner.run_study(tuner.load_space(sys.argv[1]), options)\n"
        "print(result.n_complete, result.model_uri is not None, 'mlflow' in sys.modules,\n"
        "      'sklearn' in sys.modules)\n"
        "again = tuner.run_study(tuner.load_space(sys.argv[1]),\n"
        "                        dataclasses.replace(options, study_name='again'))\n"
        "print(again.n_complete, again.model_uri is not None, 'mlflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code, str(space), tracking_uri], cwd=workdir,
                         text=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "True", "False", "False", "2", "True", "True"]
    parents, trials = runs_of(tracking_uri, "no-mlflow-here")
    assert [r.info.status for r in parents] == ["FINISHED"] * 2 and len(trials) == 4
    assert all("model_uri" in p.data.tags and "test_accuracy" in p.data.metrics
               for p in parents)
    client = mlflow.MlflowClient(tracking_uri)
    artifacts = client.list_artifacts(parents[0].info.run_id, "views")
    assert "views/views.html" in [a.path for a in artifacts]
    page = Path(client.download_artifacts(parents[0].info.run_id, "views/views.html",
                                          str(workdir))).read_text()
    assert "Parameter importances (PED-ANOVA)" in page


def test_a_bad_store_is_refused_by_the_writer_process_as_it_is_here(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's check runs in the writer process, with the same one-line error (exit code
    2 from the CLI) as in this process, before the study exists; the refused study's writer
    process is ended."""
    import tuner
    from tuner.tracking import StoreError, _writer
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
    _writer.prestart(uri, "refused", False)
    writer = _writer.prestarted_for(uri, "refused")
    try:
        with pytest.raises(StoreError) as there:
            tuner.run_study(space, tuner.RunOptions(
                tracking_uri=uri, experiment="refused", storage=str(workdir / "s.journal"),
                threads=1, progress=False))
        assert asked and writer is not None  # the check ran in the writer process
        assert not _writer.prestarted() and not writer.alive()  # which the refusal ended
    finally:
        _writer.discard_prestarted()
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
