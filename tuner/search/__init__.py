"""Optuna's side: storages, studies and their budget, samplers and pruners, heartbeats and the
reaping of lost trials, warm starts, stopping rules, the Pareto front.

Nothing here trains or tracks: a study is created or looked up, trials are claimed within its
budget and their outcomes told. Private Optuna internals are used only in `_optuna.py`.

Names load on first use: options check storage URLs without Optuna (`_defaults`), so
`tuner run` starts its writer process before Optuna's import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuner.search._asking import batch_limit, random_start_note
    from tuner.search._claim import asking_room, next_trial, study_done
    from tuner.search._defaults import (
        DEFAULT_STORAGE,
        DEFAULT_TIMEOUT_S,
        RETRY_S,
        check_parallel,
        kind_of,
    )
    from tuner.search._heartbeat import Heartbeat, LostTrial, interval_for, reap_stale
    from tuner.search._lookup import (
        best_epoch,
        best_run,
        best_trial,
        final_trial,
        find_study,
        stored_space,
    )
    from tuner.search._optuna import importance_module as optuna_importance
    from tuner.search._optuna import plotly_views as plotly_optuna_views
    from tuner.search._optuna import trial_id
    from tuner.search._pareto import (
        FrontMember,
        finite,
        format_front,
        front_table,
        front_trial,
        objectives_of,
        pareto_front,
        parse_condition,
        pick,
    )
    from tuner.search._quiet import quiet_optuna
    from tuner.search._samplers import (
        ATTR_FALLBACK,
        STARTUP_TRIALS,
        GuardedSampler,
        PerTrialSampler,
        make_pruner,
        make_sampler,
        sampler_name,
        seeded_sampler,
        shared_start_note,
        trial_seed,
    )
    from tuner.search._stopping import StoppingRules, trials_since_best
    from tuner.search._storage import (
        RetryingStorage,
        StorageUnavailable,
        describe,
        is_transient,
        open_storage,
        shared_url,
    )
    from tuner.search._study import (
        ATTR_BEST_RUN,
        ATTR_CANONICAL,
        ATTR_EXPERIMENT,
        ATTR_FINAL,
        ATTR_HASH,
        ATTR_OBJECTIVES,
        ATTR_PARENT_RUN,
        ATTR_PRUNER,
        ATTR_SEED,
        ATTR_SPACE_CHANGES,
        ATTR_SPACE_FILE,
        ATTR_SPACE_TEXT,
        ATTR_STOPPING,
        ATTR_STRATEGY,
        ATTR_TRIALS,
        HEARTBEAT,
        TRIAL_BEST_EPOCH,
        TRIAL_CONSTRAINTS,
        TRIAL_CRASH_RETRIES,
        TRIAL_CV_VALUES,
        TRIAL_ENQUEUED,
        TRIAL_GRID,
        TRIAL_INTERRUPTED,
        TRIAL_LOST,
        TRIAL_METRICS,
        TRIAL_PARAMS,
        TRIAL_REASON,
        TRIAL_REQUEUED,
        TRIAL_RETRY_OF,
        TRIAL_SEED,
        TRIAL_SURPLUS,
        StudyHandle,
        budget_slots,
        claim_waiting,
        counted_trials,
        default_study_name,
        diff_spaces,
        discard_if_unused,
        enqueue_grid,
        open_study,
        plan_budget,
        retry_attrs,
        retry_params,
        uncounted,
    )
    from tuner.search._warmstart import (
        ATTR_WARM_START,
        TRIAL_COPIED_FROM,
        apply_warm_start,
        check_warm_start,
        enqueue_known,
        points_from,
        warm_start,
    )

# Module -> the names it gives (a name loads its module on first use).
_NAMES = {
    "_asking": ("batch_limit", "random_start_note"),
    "_claim": ("asking_room", "next_trial", "study_done"),
    "_defaults": ("DEFAULT_STORAGE", "DEFAULT_TIMEOUT_S", "RETRY_S", "check_parallel", "kind_of"),
    "_heartbeat": ("Heartbeat", "LostTrial", "interval_for", "reap_stale"),
    "_lookup": ("best_epoch", "best_run", "best_trial", "final_trial", "find_study",
                "stored_space"),
    "_optuna": ("optuna_importance", "plotly_optuna_views", "trial_id"),
    "_pareto": (
        "FrontMember", "finite", "format_front", "front_table", "front_trial", "objectives_of",
        "pareto_front", "parse_condition", "pick",
    ),
    "_quiet": ("quiet_optuna",),
    "_samplers": (
        "ATTR_FALLBACK", "GuardedSampler", "PerTrialSampler", "STARTUP_TRIALS", "make_pruner",
        "make_sampler", "sampler_name", "seeded_sampler", "shared_start_note", "trial_seed",
    ),
    "_stopping": ("StoppingRules", "trials_since_best"),
    "_storage": (
        "RetryingStorage", "StorageUnavailable", "describe", "is_transient", "open_storage",
        "shared_url",
    ),
    "_study": (
        "ATTR_BEST_RUN", "ATTR_CANONICAL", "ATTR_EXPERIMENT", "ATTR_FINAL", "ATTR_HASH",
        "ATTR_OBJECTIVES", "ATTR_PARENT_RUN", "ATTR_PRUNER", "ATTR_SEED", "ATTR_SPACE_CHANGES",
        "ATTR_SPACE_FILE", "ATTR_SPACE_TEXT", "ATTR_STOPPING", "ATTR_STRATEGY", "ATTR_TRIALS", "HEARTBEAT",
        "StudyHandle", "TRIAL_BEST_EPOCH", "TRIAL_CONSTRAINTS", "TRIAL_CRASH_RETRIES",
        "TRIAL_CV_VALUES", "TRIAL_ENQUEUED", "TRIAL_GRID", "TRIAL_INTERRUPTED", "TRIAL_LOST",
        "TRIAL_METRICS", "TRIAL_PARAMS", "TRIAL_REASON", "TRIAL_REQUEUED", "TRIAL_RETRY_OF",
        "TRIAL_SEED", "TRIAL_SURPLUS", "budget_slots", "claim_waiting", "counted_trials",
        "default_study_name", "diff_spaces", "discard_if_unused", "enqueue_grid", "open_study",
        "plan_budget", "retry_attrs", "retry_params", "uncounted",
    ),
    "_warmstart": (
        "ATTR_WARM_START", "TRIAL_COPIED_FROM", "apply_warm_start", "check_warm_start",
        "enqueue_known", "points_from", "warm_start",
    ),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}
_RENAMED = {"optuna_importance": "importance_module", "plotly_optuna_views": "plotly_views"}

__all__ = [
    "ATTR_BEST_RUN", "ATTR_CANONICAL", "ATTR_EXPERIMENT", "ATTR_FALLBACK", "ATTR_FINAL",
    "ATTR_HASH", "ATTR_OBJECTIVES", "ATTR_PARENT_RUN", "ATTR_PRUNER", "ATTR_SEED",
    "ATTR_SPACE_CHANGES", "ATTR_SPACE_FILE", "ATTR_SPACE_TEXT", "ATTR_STOPPING", "ATTR_STRATEGY",
    "ATTR_TRIALS", "ATTR_WARM_START", "DEFAULT_STORAGE", "DEFAULT_TIMEOUT_S", "HEARTBEAT",
    "RETRY_S", "STARTUP_TRIALS", "TRIAL_BEST_EPOCH", "TRIAL_CONSTRAINTS", "TRIAL_COPIED_FROM",
    "TRIAL_CRASH_RETRIES", "TRIAL_CV_VALUES", "TRIAL_ENQUEUED", "TRIAL_GRID", "TRIAL_INTERRUPTED",
    "TRIAL_LOST", "TRIAL_METRICS", "TRIAL_PARAMS", "TRIAL_REASON", "TRIAL_REQUEUED",
    "TRIAL_RETRY_OF", "TRIAL_SEED", "TRIAL_SURPLUS", "FrontMember", "GuardedSampler", "Heartbeat",
    "LostTrial", "PerTrialSampler", "RetryingStorage", "StoppingRules", "StorageUnavailable",
    "StudyHandle", "apply_warm_start", "asking_room", "batch_limit", "best_epoch", "best_run",
    "best_trial", "budget_slots", "check_parallel", "check_warm_start", "claim_waiting",
    "counted_trials", "default_study_name", "describe", "diff_spaces", "discard_if_unused",
    "enqueue_grid", "enqueue_known", "final_trial", "find_study", "finite", "format_front",
    "front_table", "front_trial", "interval_for", "is_transient", "kind_of", "make_pruner",
    "make_sampler", "next_trial", "objectives_of", "open_storage", "open_study",
    "optuna_importance", "pareto_front", "parse_condition", "pick", "plan_budget",
    "plotly_optuna_views", "points_from", "quiet_optuna", "random_start_note", "reap_stale",
    "retry_attrs", "retry_params", "sampler_name", "seeded_sampler", "shared_start_note",
    "shared_url", "stored_space", "study_done", "trial_id", "trial_seed", "trials_since_best",
    "uncounted", "warm_start",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"tuner.search.{_WHERE[name]}")
        return getattr(module, _RENAMED.get(name, name))
    raise AttributeError(f"module 'tuner.search' has no attribute {name!r}")
