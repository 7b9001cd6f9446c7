"""The behaviour that makes tuner fast, guarded without timing anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from tests.conftest import TINY_SPACE, subprocess_env, write_space
from tests.helpers import metric_history, writers_started
from tuner import load_space
from tuner.data import load_dataset
from tuner.search import GuardedSampler
from tuner.space import TrialConfig
from tuner.tracking import Tracker
from tuner.training import fit
from tuner.training._stack import Stack


def test_each_epoch_visits_every_training_row_exactly_once(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    space = load_space(write_space(workdir))
    data = load_dataset(space.data)
    from tuner.training import _pack

    batches: list[torch.Tensor] = []
    forward_backward = _pack.forward_backward

    def record(stack: Stack, x: torch.Tensor, *args: Any) -> torch.Tensor:
        # The training step of a (one-trial) stack sees exactly the rows of each batch.
        batches.append(x[0].detach().clone())
        return forward_backward(stack, x, *args)

    monkeypatch.setattr(_pack, "forward_backward", record)
    fit(TrialConfig(units=(16,), batch_size=100), data, max_epochs=2, early_stopping=None,
        seed=0)
    n = len(data.train)
    per_epoch = -(-n // 100)
    assert len(batches) == 2 * per_epoch
    expected = Counter(map(bytes, data.train.x.numpy()))
    for epoch in range(2):
        rows = torch.cat(batches[epoch * per_epoch:(epoch + 1) * per_epoch]).numpy()
        assert Counter(map(bytes, rows)) == expected
    # ... and in a different order each epoch.
    assert not torch.equal(batches[0], batches[per_epoch])


def test_the_same_data_tensors_serve_every_trial(workdir: Path) -> None:
    space = load_space(write_space(workdir))
    first, second = load_dataset(space.data), load_dataset(space.data)
    assert first.train.x.data_ptr() == second.train.x.data_ptr()


def test_batched_background_tracking_writes_what_direct_calls_write(tracking_uri: str) -> None:
    epochs = [{"train_loss": 1.0 / e, "val_loss": 2.0 / e, "val_accuracy": e / 10}
              for e in range(1, 8)]
    histories = []
    # A background thread, a writer process (off the training's GIL), and direct calls.
    for asynchronous, process in ((True, False), (True, True), (False, False)):
        tracker = Tracker(tracking_uri, f"batching-{asynchronous}-{process}",
                          asynchronous=asynchronous, process=process)
        parent = tracker.start_study("s", {}, {}, None)
        run = tracker.start_trial(parent, "s", 0, {"lr": 0.1}, {})
        for epoch, metrics in enumerate(epochs, start=1):
            run.on_epoch_end(epoch, metrics)
            if epoch == 4:
                run.flush()  # a mid-trial flush, as long trials do
        run.finish("COMPLETE", {"epochs": 7}, {"objective": 0.7})
        tracker.end_run(parent, "FINISHED")
        assert (tracker.remote is not None) == process
        histories.append({
            key: [(m.step, m.value) for m in sorted(metric_history(tracking_uri, run.run_id, key),
                                                    key=lambda m: m.step)]
            for key in ("train_loss", "val_loss", "val_accuracy", "objective")})
        tracker.close()
    assert histories[0] == histories[1] == histories[2]
    assert histories[0]["val_accuracy"] == [(e, e / 10) for e in range(1, 8)]


def test_a_new_sqlite_store_is_a_copy_of_one_empty_store_per_mlflow_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    stores = [tmp_path / "a" / "mlflow.db", tmp_path / "b" / "mlflow.db"]
    for store in stores:
        store.parent.mkdir()
        tracker = Tracker(f"sqlite:///{store}", "copied")
        parent = tracker.start_study("s", {}, {"lr": 0.1}, None)
        tracker.end_run(parent, "FINISHED")
        assert tracker.run_data(parent)[0]["tuner.role"] == "study"
        tracker.close()
    template = tmp_path / "cache" / "tuner" / f"mlflow-{mlflow.__version__}-empty.db"
    assert template.exists() and template.stat().st_nlink >= 1
    # The template stays empty: what the studies wrote went to their own stores.
    assert mlflow.tracking.MlflowClient(f"sqlite:///{template}").search_runs(["0"]) == []


def _sampled(sampler: optuna.samplers.BaseSampler, seconds: float, trials: int) -> optuna.Study:
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -3, 3)
        time.sleep(seconds)
        return x * x

    study.optimize(objective, n_trials=trials)
    return study


def test_the_guard_hands_an_expensive_sampler_over_to_a_cheap_one() -> None:
    guarded = GuardedSampler(optuna.samplers.GPSampler(seed=0), optuna.samplers.RandomSampler(0),
                             max_share=0.3, min_trials=4)
    study = _sampled(guarded, 0.0, 12)  # free trials: choosing dominates
    assert guarded.switched
    assert "switching to RandomSampler" in study.user_attrs["tuner.sampler_fallback"]


def test_the_guard_keeps_a_sampler_that_costs_little_next_to_training() -> None:
    guarded = GuardedSampler(optuna.samplers.TPESampler(seed=0), optuna.samplers.RandomSampler(0),
                             max_share=0.3, min_trials=4)
    study = _sampled(guarded, 0.05, 8)
    assert not guarded.switched
    assert "tuner.sampler_fallback" not in study.user_attrs


def test_validate_warns_that_gp_cost_grows_with_the_trials(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tuner.cli import main

    space = write_space(workdir, TINY_SPACE.replace("strategy: random", "strategy: gp"), "gp.yaml")
    assert main(["validate", str(space), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert any("cubically" in n and "TPE" in n for n in notes)
    plain = write_space(workdir, TINY_SPACE, "plain.yaml")
    assert main(["validate", str(plain), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == []


def test_the_tracker_takes_over_the_writer_process_started_before_the_imports(
        tracking_uri: str) -> None:
    from tuner.tracking import _pool

    _pool.prestart(tracking_uri, "prestarted", False)
    early = _pool._prestarted[(tracking_uri, "prestarted", False)]
    tracker = Tracker(tracking_uri, "prestarted", process=True, warm_up=False)
    try:
        assert tracker.remote is early and not _pool._prestarted
        parent = tracker.start_study("s", {}, {}, None)
        run = tracker.start_trial(parent, "s", 0, {"lr": 0.1}, {})
        run.on_epoch_end(1, {"val_accuracy": 0.5})
        run.finish("COMPLETE", {"epochs": 1}, {"objective": 0.5})
        assert [m.value for m in metric_history(tracking_uri, run.run_id, "val_accuracy")] == [0.5]
        # It has answered, so it runs: at a lower priority (background work must not take the
        # training's core from another process).
        assert os.getpriority(os.PRIO_PROCESS, early._process.pid) >= \
            min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    finally:
        tracker.close()


def test_a_shared_writer_adopts_the_prestarted_one_and_outlives_the_studies_it_lends_to(
        tracking_uri: str) -> None:
    """`tuner compare` prestarts the writer beside its imports; the comparison shares that one
    (not a second): each study's tracker borrows it and leaves it running; the block keeps it
    for the interpreter's next study, and the interpreter's end (`close_kept`) closes it."""
    from tuner.tracking import _pool

    _pool.prestart(tracking_uri, "shared-cli", False)
    early = _pool._prestarted[(tracking_uri, "shared-cli", False)]
    with _pool.SharedWriter(tracking_uri, "shared-cli", False, start=False):
        assert not _pool._prestarted and _pool.prestarted()
        for study in ("a", "b"):
            tracker = Tracker(tracking_uri, "shared-cli", process=True, warm_up=False)
            assert tracker.remote is early
            parent = tracker.start_study(study, {}, {}, None)
            run = tracker.start_trial(parent, study, 0, {"lr": 0.1}, {})
            run.finish("COMPLETE", {"epochs": 1}, {"objective": 0.5})
            tracker.close()
            assert early.alive()  # borrowed, not ended
    assert early.alive() and not _pool.prestarted() and _pool._kept is not None
    _pool.close_kept()
    assert early._process.poll() == 0 and _pool._kept is None
    assert {r.info.status for r in _trial_runs(tracking_uri, "shared-cli")} == {"FINISHED"}
    assert len(_trial_runs(tracking_uri, "shared-cli")) == 2


def _one_trial(uri: str | None, experiment: str, study: str) -> Any:
    """A study's worth of tracking through a shared (or kept) writer: one trial run."""
    tracker = Tracker(uri, experiment, process=True, warm_up=False)
    parent = tracker.start_study(study, {}, {}, None)
    run = tracker.start_trial(parent, study, 0, {"lr": 0.1}, {})
    run.finish("COMPLETE", {"epochs": 1}, {"objective": 0.5})
    remote = tracker.remote
    tracker.close()
    return remote


def test_a_kept_writer_serves_the_next_study_on_its_store_only_and_ends_when_idle(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer a study used is kept for the interpreter's next study on the same store, with
    what it wrote settled in the store's file (no write-ahead log left); a study refused before
    it borrowed it leaves it kept. A store named otherwise here (`mlflow.set_tracking_uri`) is
    not its: it is ended, not used. Kept unused for `KEPT_IDLE_S`, it ends by itself, and the
    next study starts without it."""
    import mlflow

    from tuner.tracking import _pool

    db = workdir / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    with _pool.SharedWriter(None, "kept", False, start=True):
        writer = _one_trial(None, "kept", "a")
    assert writer is not None and _pool._kept is not None and _pool._kept[1] is writer
    assert writer.alive() and not Path(f"{db}-wal").exists()  # settled, as at a study's end
    with pytest.raises(KeyError), _pool.SharedWriter(None, "other", False, start=False):
        raise KeyError("a study refused before it used the writer")
    with _pool.SharedWriter(None, "other", False, start=False):
        assert _one_trial(None, "other", "b") is writer  # another experiment, the same store
    assert _pool._kept is not None and _pool._kept[1] is writer
    assert {r.info.status for r in _trial_runs(f"sqlite:///{db}", "kept")} == {"FINISHED"}
    assert len(_trial_runs(f"sqlite:///{db}", "other")) == 1

    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'elsewhere.db'}")
    try:
        with _pool.SharedWriter(None, "kept", False, start=False):
            assert not _pool.prestarted()  # not this store's writer: none
    finally:
        mlflow.set_tracking_uri(None)
    assert _pool._kept is None and writer._process.poll() == 0

    monkeypatch.setattr(_pool, "KEPT_IDLE_S", 0.5)
    with _pool.SharedWriter(None, "kept", False, start=True):
        idle = _one_trial(None, "kept", "c")
    assert idle is not writer and _pool._kept is not None
    deadline = time.monotonic() + 30
    while idle._process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert idle._process.poll() == 0  # ended by itself
    with _pool.SharedWriter(None, "kept", False, start=False):
        assert not _pool.prestarted()
    assert _pool._kept is None and len(_trial_runs(f"sqlite:///{db}", "kept")) == 2


def test_the_prestarted_writer_checks_an_existing_store_before_it_is_asked(
        tmp_path: Path) -> None:
    """`tuner run` starts its writer before its own imports: a store that exists is checked
    meanwhile (the study would wait ~50 ms for MLflow's schema check), a new one is made only
    when the study asks (bad input must leave no store behind)."""
    import sqlite3

    from tuner.tracking import _pool

    stores = {name: tmp_path / name / "mlflow.db" for name in ("existing", "stale", "new")}
    for name, db in stores.items():
        db.parent.mkdir()
        if name != "new":
            Tracker(f"sqlite:///{db}", "pre").close()
    with sqlite3.connect(stores["stale"]) as stale:  # a schema this MLflow does not expect
        stale.execute("UPDATE alembic_version SET version_num = '0c779009ac13'")
    try:
        for db in stores.values():
            _pool.prestart(f"sqlite:///{db}", "pre", False)
        writers = {name: _pool.prestarted_for(f"sqlite:///{db}", "pre")
                   for name, db in stores.items()}
        for name, writer in writers.items():
            assert writer is not None
            writer.drain()  # its imports are made, and what it did unasked
            assert (writer.seconds > 0) == (name != "new"), name  # time spent checking
        assert not stores["new"].exists()
        assert writers["existing"].check("pre") is None
        assert "has schema version 0c779009ac13" in str(writers["stale"].check("pre"))
        assert writers["new"].check("pre") is None and stores["new"].exists()
    finally:
        for writer in _pool._prestarted.values():
            writer.close()
        _pool._prestarted.clear()


def test_the_study_imports_its_end_while_the_writer_process_checks_the_store(
        tmp_path: Path) -> None:
    """`tuner run` reaches the store check before its writer process has made MLflow's imports
    (the data needs no scikit-learn): the views page's imports are made while the check runs
    there, not before it is asked nor after it answers."""
    from tuner.tracking import _pool, check_store

    db = tmp_path / "mlflow.db"
    seen: list[bool] = []

    def meanwhile() -> None:  # the new store appears while this runs: the check was asked
        deadline = time.monotonic() + 60
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(db.exists())

    try:
        _pool.prestart(f"sqlite:///{db}", "meanwhile", False)
        check_store(f"sqlite:///{db}", "meanwhile", meanwhile=meanwhile)
    finally:
        for writer in _pool._prestarted.values():
            writer.close()
        _pool._prestarted.clear()
    assert seen == [True]
    check_store(f"sqlite:///{tmp_path / 'here.db'}", "meanwhile", meanwhile=meanwhile)
    assert seen == [True], "without a writer process this process checks: nothing to overlap"


def test_studies_run_from_python_write_from_a_thread_and_start_no_writer_process(
        workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study in a process that holds MLflow (here, the suite's) and has no writer kept for
    its store writes from a thread: a writer process started for it would make MLflow's imports
    while the study waits, where this process has them already. A comparison without a spare
    core starts none either."""
    import mlflow  # noqa: F401  (loaded, as a notebook that used MLflow has it)

    from tuner import CompareOptions, RunOptions, compare, run_study
    from tuner.execution import _compare
    from tuner.tracking import _writer

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("a writer process was started")

    monkeypatch.setattr(_writer.ProcessWriter, "__init__", no_process)
    space = load_space(write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 1")))
    for seed in (0, 1):
        result = run_study(space, RunOptions(
            seed=seed, trials=1, storage="threads.journal", study_name=f"alone-{seed}",
            tracking_uri=tracking_uri, log_model=False, views=False, progress=False, threads=1))
        assert result.n_complete == 1
    monkeypatch.setattr(_compare, "spare_core", lambda threads: False)
    compared = compare(space, CompareOptions(
        strategies=("random",), trials=1, repeats=2, name="threads", storage="threads.journal",
        tracking_uri=tracking_uri, out=str(workdir / "out"), log_model=False, views=False,
        threads=1))
    assert len(compared.studies) == 2 and len(compared.trials) == 2


SHARED_WRITER_SCRIPT = """
import json, sys
from tuner import CompareOptions, compare, load_space
from tuner.execution import _compare
from tuner.tracking import _writer

_compare.spare_core = lambda threads: True  # the suite's machine may be busy
started = []
init = _writer.ProcessWriter.__init__
def counted(self, *args, **kwargs):
    init(self, *args, **kwargs)
    started.append(self)
_writer.ProcessWriter.__init__ = counted
result = compare(load_space(sys.argv[1]), CompareOptions(
    strategies=("random", "tpe"), trials=2, repeats=1, name="shared", storage="s.journal",
    tracking_uri=sys.argv[2], out="out", views=False, threads=1))
print(json.dumps({"writers": len(started), "kept": [w.alive() for w in started],
                  "pids": [w._process.pid for w in started],
                  "model_logging_here": "mlflow.pytorch" in sys.modules,
                  "studies": len(result.studies)}))
"""


def test_a_comparison_shares_one_writer_process_among_its_studies(
        workdir: Path, tracking_uri: str) -> None:
    """One process makes MLflow's and model logging's imports for every study of the
    comparison, writes their trial runs and logs their models (the comparison's own process
    never imports MLflow's PyTorch flavour); it is kept for the interpreter's next study when
    the comparison returns, and has ended with the interpreter."""
    from mlflow import MlflowClient

    space = write_space(workdir, TINY_SPACE.replace("max_epochs: 3", "max_epochs: 1"))
    done = subprocess.run([sys.executable, "-c", SHARED_WRITER_SCRIPT, str(space),
                           tracking_uri], cwd=workdir, env=subprocess_env(tracking_uri),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    pids = seen.pop("pids")
    assert seen == {"writers": 1, "kept": [True], "model_logging_here": False, "studies": 2}
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)  # reaped at the exit
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("shared")
    assert experiment is not None
    found = client.search_runs([experiment.experiment_id], max_results=100)
    roles = Counter((r.data.tags["tuner.role"], r.info.status) for r in found)
    assert roles == {("comparison", "FINISHED"): 1, ("study", "FINISHED"): 2,
                     ("trial", "FINISHED"): 4}
    studies = {r.info.run_id for r in found if r.data.tags["tuner.role"] == "study"}
    models = client.search_logged_models([experiment.experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted(studies)


SLOW_OBJECTIVE = """\
name: {name}
model: custom
objective: {{metric: score, direction: maximize}}
training: {{max_epochs: 1, early_stopping: false}}
study: {{strategy: random, trials: {trials}, seed: 0, pruner: none}}
params:
  x: {{type: float, low: 0, high: 1}}
"""


def _slow_study(tmp_path: Path, name: str, trials: int, pause_s: float) -> tuple[Any, str]:
    """A study run from Python whose trials take `pause_s` each; (its result, its store)."""
    from tuner import RunOptions, parse_space, run_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def objective(params: dict[str, Any], reporter: Any) -> float:
        time.sleep(pause_s)
        return float(params["x"])

    space = parse_space(SLOW_OBJECTIVE.format(name=name, trials=trials),
                        file=str(tmp_path / "slow.yaml"))
    result = run_study(space, RunOptions(storage=str(tmp_path / f"{name}.journal"),
                                         tracking_uri=uri, progress=False, views=False,
                                         log_model=False, threads=1), objective=objective)
    return result, uri


def _trial_runs(uri: str, experiment: str) -> list[Any]:
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("tuner.role") == "trial"]


def test_a_study_run_from_python_hands_its_trial_runs_over_to_a_writer_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer thread's MLflow work holds the training's interpreter lock; a study from Python
    with enough left (judged on its trials so far) starts a writer process, and the trial runs
    that start once it has the store open are written there, to their end, as the thread
    writes them."""
    from tuner.tracking import _handover, _writer

    created: list[int] = []
    create = _writer.ProcessWriter.create

    def counted(self: Any, *args: Any) -> int:
        ref = create(self, *args)
        created.append(ref)
        return ref

    monkeypatch.setattr(_writer.ProcessWriter, "create", counted)
    monkeypatch.setattr(_handover, "spare_core", lambda threads: True)  # the suite's machine
    monkeypatch.setattr(_handover, "MIN_REMAINING_S", 0.5)
    result, uri = _slow_study(tmp_path, "handed", trials=100, pause_s=0.06)
    runs = _trial_runs(uri, "handed")
    assert result.n_complete == 100 and len(runs) == 100
    assert 0 < len(created) < 100, "the first runs are the thread's, the later ones the process's"
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert all("x" in r.data.params and "objective" in r.data.metrics for r in runs)
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == list(range(100))


def test_a_hand_over_that_is_not_ready_when_the_study_ends_is_ended_and_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuner.tracking import _handover, _writer

    started = writers_started(monkeypatch)
    monkeypatch.setattr(_writer.ProcessWriter, "opened", lambda self: None)  # never ready
    monkeypatch.setattr(_handover, "spare_core", lambda threads: True)
    monkeypatch.setattr(_handover, "MIN_REMAINING_S", 0.0)
    result, uri = _slow_study(tmp_path, "unready", trials=12, pause_s=0.01)
    runs = _trial_runs(uri, "unready")
    assert len(started) == 1 and started[0]._process.poll() is not None  # ended, not left
    assert result.n_complete == 12 and len(runs) == 12
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_a_short_study_from_python_starts_no_writer_process(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve trials of 10 ms: a writer process would not be ready before the study ends."""
    from tuner.tracking import _handover, _writer

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("a writer process was started")

    monkeypatch.setattr(_writer.ProcessWriter, "__init__", no_process)
    monkeypatch.setattr(_handover, "spare_core", lambda threads: True)
    result, uri = _slow_study(tmp_path, "short", trials=12, pause_s=0.01)
    assert result.n_complete == 12 and len(_trial_runs(uri, "short")) == 12


def test_the_writers_warm_up_saves_a_model_as_the_study_logs_it(tmp_path: Path) -> None:
    """The writer process warms up by saving a tiny model through the same options as the
    study's model (pt2, signature, requirements): that model loads and predicts as saved."""
    import mlflow.pytorch
    import numpy as np

    from tuner.tracking._model_io import save_torch_model

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    example = np.arange(6, dtype=np.float32).reshape(2, 3)
    save_torch_model(str(tmp_path / "model"), model, example)
    loaded = mlflow.pytorch.load_model(str(tmp_path / "model"))
    with torch.inference_mode():
        assert torch.allclose(loaded(torch.as_tensor(example)), model(torch.as_tensor(example)))
    assert "torch==" in (tmp_path / "model" / "requirements.txt").read_text()


def test_a_logged_model_loads_and_predicts_without_mlflow_loading_it_back_at_logging(
        tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The study's model is logged without MLflow's serving check (which loads the model back:
    a fifth of a second at every study's end); what is logged loads and predicts as trained."""
    import mlflow.pyfunc
    import mlflow.pytorch
    import numpy as np
    from mlflow import MlflowClient

    from tuner.tracking._model_io import log_torch_model_at

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # where `models:/` URIs are found
    client = MlflowClient(tracking_uri)
    run = client.create_run(client.create_experiment(f"logged-{time.monotonic_ns()}"))
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    example = np.arange(6, dtype=np.float32).reshape(2, 3)
    loaded_back: list[object] = []

    def no_loading_back(*args: object, **kwargs: object) -> None:
        loaded_back.append(args)  # MLflow catches what this raises: recorded instead
        raise RuntimeError("MLflow loaded the model back while logging it")

    with monkeypatch.context() as patched:
        patched.setattr(mlflow.pyfunc, "load_model", no_loading_back)
        model_uri = log_torch_model_at(tracking_uri, run.info.run_id, model, example)
    assert loaded_back == []
    loaded = mlflow.pytorch.load_model(model_uri)
    with torch.inference_mode():
        assert torch.allclose(loaded(torch.as_tensor(example)), model(torch.as_tensor(example)))


_LOGGING_LEAVES_NO_URI = """
import os, sys

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient

from tuner.tracking._model_io import log_torch_model_at

store = sys.argv[1]
client = MlflowClient(store)
run = client.create_run(client.create_experiment("leaves-no-uri"))
model = torch.nn.Sequential(torch.nn.Linear(3, 2))
example = np.zeros((2, 3), dtype=np.float32)
for environment in (None, "sqlite:///notebook.db"):
    if environment is not None:
        os.environ["MLFLOW_TRACKING_URI"] = environment
    before = mlflow.get_tracking_uri()
    log_torch_model_at(store, run.info.run_id, model, example)
    assert os.environ.get("MLFLOW_TRACKING_URI") == environment, os.environ.get(
        "MLFLOW_TRACKING_URI")
    assert mlflow.get_tracking_uri() == before, (mlflow.get_tracking_uri(), before)
os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///changed-later.db"  # the notebook changes it
assert mlflow.get_tracking_uri() == "sqlite:///changed-later.db", mlflow.get_tracking_uri()
mlflow.set_tracking_uri("sqlite:///set-in-code.db")  # fixed in code: that stays
log_torch_model_at(store, run.info.run_id, model, example)
assert mlflow.get_tracking_uri() == "sqlite:///set-in-code.db", mlflow.get_tracking_uri()
print("clean")
"""


def test_logging_a_model_in_process_leaves_the_callers_tracking_uri_as_it_was(
        tmp_path: Path) -> None:
    """Model logging sets MLflow's global tracking URI for its call (a notebook's study logs its
    model in the notebook's process); afterwards the environment and the URI are as before, and
    a URI the notebook never set in code is not left fixed."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-c", _LOGGING_LEAVES_NO_URI,
                           f"sqlite:///{tmp_path}/mlflow.db"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0 and "clean" in done.stdout, done.stderr[-2000:]


def test_waiting_for_the_writer_process_to_exit_is_bounded() -> None:
    import subprocess
    import sys

    from tuner.tracking._writer import _exited

    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    assert _exited(quick, timeout=30) and quick.returncode == 0
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not _exited(stuck, timeout=0.2)
    finally:
        stuck.kill()
        stuck.wait()
