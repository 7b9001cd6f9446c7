"""Reading back and mending what a study left in MLflow: a trial's run, the run of a trial whose
worker died, a worker joining a study's parent run, comparison runs, an experiment's runs.

MLflow is imported by the functions that use it: a study's process imports this module (to end
the run of a trial lost to a dead worker) but, with a writer process, never needs MLflow."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tuner.errors import OptionError, TunerError, redact
from tuner.tracking._client import (
    BATCH_LIMIT,
    client_for,
    experiment_of_run,
    store_uri,
    text,
    trial_run,
)
from tuner.tracking._pool import prestarted_for
from tuner.tracking._tracker import Tracker


def find_trial_run(tracking_uri: str | None, experiment_id: str, study: str,
                   number: int) -> str | None:
    """The MLflow run id holding trial `number` of `study`, if it was tracked there."""
    return trial_run(client_for(tracking_uri), experiment_id, study, number)


def fail_trial_run(tracker: Tracker, study: str, number: int, run_id: str | None,
                   reason: str) -> str | None:
    """End the MLflow run of a trial whose worker died: FAILED with the reason, if still open."""
    from mlflow.entities import RunTag

    if run_id is None:
        run_id = tracker.trial_run_id_of(study, number)
    if run_id is None:
        return None
    run = tracker.timed(tracker.client.get_run, run_id)
    if run.info.status != "RUNNING":
        return run_id
    tracker.timed(tracker.client.log_batch, run_id, tags=[
        RunTag("state", "FAIL"), RunTag("fail_reason", text(reason))])
    tracker.end_run(run_id, "FAILED")
    return run_id


def join_tracker(tracking_uri: str | None, experiment_id: str, parent_run_id: str) -> Tracker:
    """A tracker for a worker joining a study whose parent run already exists (maybe created on
    another host); the store must be the one the study logs to."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = client_for(tracking_uri)
    shown = redact(tracking_uri or mlflow.get_tracking_uri())
    try:
        experiment = client.get_experiment(experiment_id)
        client.get_run(parent_run_id)
    except MlflowException:
        raise OptionError("tracking_uri", f"the study logs to MLflow experiment {experiment_id} "
                          f"(parent run {parent_run_id}), which is not in the tracking store "
                          f"{shown}: pass the study's " "{tracking_uri}, or {tracking=False}"
                          ) from None
    return Tracker(tracking_uri, experiment.name)


# Comparisons (`tuner compare`): one run over many study parent runs.
_COMPARISON = "tags.`tuner.role` = 'comparison' and tags.comparison = '{}'"


def default_tracking_uri() -> str:
    """Where `tuner run` logs without --tracking-uri: MLFLOW_TRACKING_URI or MLflow's default."""
    import mlflow

    return str(mlflow.get_tracking_uri())


def check_comparison(tracking_uri: str | None, experiment: str, name: str,
                     params: Mapping[str, Any]) -> None:
    """Refuse to resume comparison `name` with other settings; reads, writes nothing."""
    client = client_for(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], _COMPARISON.format(name),
                              max_results=1) if found else []
    stored = runs[0].data.params if runs else {}
    changed = [f"{k}: {stored[k]} -> {text(v)}" for k, v in params.items()
               if k in stored and stored[k] != text(v)]
    if changed:
        raise OptionError("name", f"comparison {name!r} in experiment {experiment!r} was run "
                          f"with other settings ({'; '.join(changed)}): use the same settings to "
                          "resume it, or another {name}")


def start_comparison(tracker: Tracker, name: str, tags: Mapping[str, str],
                     params: Mapping[str, Any]) -> str:
    """The comparison's run: reopened when the same comparison runs again, else created."""
    from mlflow.entities import Param

    runs = tracker.timed(tracker.client.search_runs, [tracker.experiment_id],
                         _COMPARISON.format(name), max_results=1)
    if runs:
        run_id = str(runs[0].info.run_id)
        tracker.timed(tracker.client.update_run, run_id, status="RUNNING")
        tracker.log_summary(run_id, {}, tags)
        return run_id
    run = tracker.timed(tracker.client.create_run, tracker.experiment_id, run_name=name,
                        tags={**tags, "tuner.role": "comparison", "comparison": name})
    run_id = str(run.info.run_id)
    tracker.timed(tracker.client.log_batch, run_id,
                  params=[Param(k, text(v)) for k, v in params.items()])
    return run_id


def run_status(tracker: Tracker, run_id: str) -> str | None:
    """FINISHED, RUNNING, KILLED, ...; None for a run that is missing or deleted."""
    from mlflow.exceptions import MlflowException

    try:
        run = tracker.timed(tracker.client.get_run, run_id)
    except MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else str(run.info.status)


def trial_run_tags(tracker: Tracker, study: str) -> dict[int, dict[str, str]]:
    """Trial number -> tags of the latest MLflow run of that trial of `study`."""
    out: dict[int, dict[str, str]] = {}
    token = None
    while True:
        page = tracker.timed(tracker.client.search_runs, [tracker.experiment_id],
                             f"tags.study = '{study}' and tags.`tuner.role` = 'trial'",
                             max_results=1000, order_by=["attributes.start_time ASC"],
                             page_token=token)
        for run in page:
            out[int(run.data.tags["trial_number"])] = dict(run.data.tags)
        token = page.token
        if not token:
            return out


def log_study_outcome(tracker: Tracker, run_id: str, metrics: Mapping[str, float | None],
                      best_so_far: list[tuple[int, float]]) -> None:
    """A study's standing in its comparison, and its best-so-far curve (step = trial), which
    the UI can chart per strategy; steps already logged are not logged again."""
    from mlflow.entities import Metric

    logged = {m.step for m in tracker.timed(tracker.client.get_metric_history, run_id,
                                            "best_so_far")}
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
    batch += [Metric("best_so_far", float(v), now, int(s)) for s, v in best_so_far
              if int(s) not in logged]
    for i in range(0, len(batch), BATCH_LIMIT):
        tracker.timed(tracker.client.log_batch, run_id, metrics=batch[i:i + BATCH_LIMIT])


def run_experiment(tracking_uri: str | None, run_id: str) -> str | None:
    """The name of the experiment that holds `run_id` in this store; None if it is not there.
    Asked of the writer process started for this store, if there is one (this process then
    imports no MLflow)."""
    writer = prestarted_for(tracking_uri, None)
    if writer is not None:
        found = writer.store("experiment_of_run", run_id)
        return None if found is None else str(found)
    return experiment_of_run(client_for(tracking_uri), run_id)


def list_experiments(tracking_uri: str | None, name: str | None = None) -> list[tuple[str, str]]:
    """(id, name) of the active experiments of a store, oldest first (MLflow's Default experiment
    only if it has runs); with `name`, that one experiment, or an error listing the others."""
    client = client_for(tracking_uri)
    found = []
    for experiment in client.search_experiments(max_results=1000):
        eid = str(experiment.experiment_id)
        if experiment.name == "Default" and not client.search_runs([eid], max_results=1):
            continue
        found.append((eid, str(experiment.name)))
    found.sort(key=lambda e: (not e[0].isdigit(), int(e[0]) if e[0].isdigit() else 0, e[0]))
    if name is None:
        return found
    chosen = [e for e in found if e[1] == name]
    if not chosen:
        names = ", ".join(n for _, n in found) or "none"
        raise OptionError("experiment", f"no experiment {name!r} in "
                          f"{redact(store_uri(tracking_uri))}; experiments: {names}")
    return chosen


def runs_frame(tracking_uri: str | None, experiment: str) -> Any:
    """An experiment's runs as a pandas DataFrame (the Python API's `tuner.runs`)."""
    client = client_for(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise TunerError(f"no MLflow experiment {experiment!r} in "
                         f"{redact(tracking_uri or default_tracking_uri())}")
    import pandas as pd

    rows = []
    for run in client.search_runs([found.experiment_id], max_results=5000):
        rows.append({"run_id": run.info.run_id, "run_name": run.info.run_name,
                     "status": run.info.status,
                     **{f"tags.{k}": v for k, v in run.data.tags.items()
                        if not k.startswith("mlflow.")},
                     **{f"params.{k}": v for k, v in run.data.params.items()},
                     **{f"metrics.{k}": v for k, v in run.data.metrics.items()}})
    return pd.DataFrame(rows)
