"""Reading back what a study left in MLflow (tests talk to the real store); the writer
processes a test started."""

from __future__ import annotations

from typing import Any

from mlflow.tracking import MlflowClient


def runs_of(tracking_uri: str, experiment: str) -> tuple[list, list]:
    """(parent runs, trial runs) of an experiment."""
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("tuner.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("tuner.role") == "trial"]
    return parents, trials


def metric_history(tracking_uri: str, run_id: str, key: str) -> list:
    return MlflowClient(tracking_uri).get_metric_history(run_id, key)


def load_study(name: str, path: Any) -> Any:
    """Open a study in a journal file, as a user would with Optuna alone."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return optuna.load_study(study_name=name,
                             storage=JournalStorage(JournalFileBackend(str(path))))


def writers_started(monkeypatch: Any) -> list[Any]:
    """The MLflow writer processes (`ProcessWriter`) started from now on, as they start: real
    ones, only counted."""
    from tuner.tracking import _writer

    return instances_made(monkeypatch, _writer.ProcessWriter)


def instances_made(monkeypatch: Any, cls: Any) -> list[Any]:
    """The instances of `cls` made from now on, as they are made: real ones, only counted."""
    made: list[Any] = []
    init = cls.__init__

    def keep(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(cls, "__init__", keep)
    return made
