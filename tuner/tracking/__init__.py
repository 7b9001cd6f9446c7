"""MLflow: the only package that imports it. The tracker writes one parent run per study and one
nested child run per trial (per-epoch metrics buffered and written by a background thread, off
the training's critical path); models are logged once per study; queries read runs back; the
server module runs the MLflow UI over the same store.
"""

from tuner.tracking._check import StoreError, check_store
from tuner.tracking._models import log_raw_row_model, log_torch_model, register_model
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
from tuner.tracking._tracker import (
    PARENT_RUN_TAG,
    RUN_STATUS,
    Tracker,
    TrialRun,
    client_for,
    store_uri,
)

__all__ = [
    "PARENT_RUN_TAG", "RUN_STATUS", "StoreError", "Tracker", "TrialRun", "check_comparison",
    "check_store", "client_for",
    "default_tracking_uri",
    "fail_trial_run", "find_trial_run", "join_tracker", "list_experiments", "log_raw_row_model",
    "log_study_outcome",
    "log_torch_model", "register_model", "run_experiment", "run_status", "runs_frame",
    "start_comparison", "store_uri", "trial_run_tags",
]
