"""MLflow: the only package that imports it. The tracker writes one parent run per study and one
nested child run per trial (per-epoch metrics buffered and written by a background thread, off
the training's critical path); models are logged once per study; queries read runs back; the
server module runs the MLflow UI over the same store.

Names load on first use: `tuner run` starts the writer process (`SharedWriter`, which a
notebook's next study reuses) before its own heavy imports, and that process does all of the
study's MLflow work (the study's process imports no MLflow).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.tracking._client import client_for, store_uri
    from tuner.tracking._errors import StoreError
    from tuner.tracking._models import log_raw_row_model, log_torch_model, register_model
    from tuner.tracking._pool import SharedWriter
    from tuner.tracking._pool import close_kept as close_kept_writer
    from tuner.tracking._pool import discard_prestarted as discard_prestarted_writers
    from tuner.tracking._pool import prestart as prestart_writer
    from tuner.tracking._pool import prestarted as writer_prestarted
    from tuner.tracking._preflight import check_store, prepare_client
    from tuner.tracking._queries import (
        check_comparison,
        default_tracking_uri,
        fail_trial_run,
        find_trial_run,
        join_tracker,
        list_experiments,
        log_study_outcome,
        run_experiment,
        run_status,
        runs_frame,
        start_comparison,
        trial_run_tags,
    )
    from tuner.tracking._tracker import PARENT_RUN_TAG, RUN_STATUS, Tracker, TrialRun
    from tuner.tracking._writer import spare_core

_WHERE = {
    "StoreError": "_errors",
    "check_store": "_preflight",
    "prepare_client": "_preflight",
    "client_for": "_client",
    "store_uri": "_client",
    "log_raw_row_model": "_models",
    "log_torch_model": "_models",
    "register_model": "_models",
    "check_comparison": "_queries",
    "default_tracking_uri": "_queries",
    "fail_trial_run": "_queries",
    "find_trial_run": "_queries",
    "join_tracker": "_queries",
    "list_experiments": "_queries",
    "log_study_outcome": "_queries",
    "run_experiment": "_queries",
    "run_status": "_queries",
    "runs_frame": "_queries",
    "start_comparison": "_queries",
    "trial_run_tags": "_queries",
    "PARENT_RUN_TAG": "_tracker",
    "RUN_STATUS": "_tracker",
    "Tracker": "_tracker",
    "TrialRun": "_tracker",
    "prestart_writer": "_pool",
    "discard_prestarted_writers": "_pool",
    "writer_prestarted": "_pool",
    "close_kept_writer": "_pool",
    "SharedWriter": "_pool",
    "spare_core": "_writer",
}
_RENAMED = {"prestart_writer": "prestart", "writer_prestarted": "prestarted",
            "discard_prestarted_writers": "discard_prestarted",
            "close_kept_writer": "close_kept"}

__all__ = [
    "PARENT_RUN_TAG", "RUN_STATUS", "SharedWriter", "StoreError", "Tracker", "TrialRun",
    "check_comparison", "check_store", "client_for", "close_kept_writer", "default_tracking_uri",
    "discard_prestarted_writers", "fail_trial_run",
    "find_trial_run", "join_tracker", "list_experiments", "log_raw_row_model",
    "log_study_outcome", "log_torch_model", "prepare_client", "prestart_writer", "register_model",
    "run_experiment", "run_status", "runs_frame", "spare_core", "start_comparison", "store_uri",
    "trial_run_tags", "writer_prestarted",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"tuner.tracking.{_WHERE[name]}")
        return getattr(module, _RENAMED.get(name, name))
    raise AttributeError(f"module 'tuner.tracking' has no attribute {name!r}")
