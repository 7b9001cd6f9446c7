"""Every use of Optuna beyond its public API, in one place.

tuner claims queued trials itself (several workers, one budget), re-queues a trial with the
parameters it was queued with, finds a trial's storage id and the NSGA-II generation it was
asked in; Optuna offers no public call for these. It also loads Optuna's plotly views without
the matplotlib import that comes with them. tests/test_optuna_internals.py pins each
behaviour, so an Optuna upgrade that changes one fails there, loudly, and this file is the one
to mend.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (its `number` counts within the study, the id within the
    storage)."""
    return int(trial._trial_id)


def trial_of(study: Study, trial_id: int) -> optuna.Trial:
    """A live `Trial` on a trial that is RUNNING in the storage (claimed here, not asked)."""
    return optuna.Trial(study, trial_id)


def set_state(storage: BaseStorage, trial_id: int, state: TrialState) -> bool:
    """Change a trial's state in one storage call. Moving a WAITING trial to RUNNING is atomic: of
    several processes, one gets True; a finished trial raises UpdateFinishedTrialError."""
    return bool(storage.set_trial_state_values(trial_id, state=state))


def queued_params(trial: FrozenTrial) -> dict[str, Any]:
    """The parameters a trial was queued with (`enqueue_trial`), which Optuna keeps in the trial
    until it ends; empty for a sampled trial."""
    return dict(trial.system_attrs.get("fixed_params") or {})


_MPL_VIEWS = "optuna.visualization.matplotlib"


def ga_generation(trial: FrozenTrial) -> int | None:
    """The generation NSGA-II gave a trial when it was asked (None: not an NSGA-II trial)."""
    generation = trial.system_attrs.get("NSGAIISampler:generation")
    return None if generation is None else int(generation)


def plotly_views() -> ModuleType:
    """`optuna.visualization` (the plotly views), loaded without matplotlib: its `__init__`
    imports the `matplotlib` subpackage, which imports pyplot inside a `try_import` (a third of
    a second at the end of every study, for PNGs that are not drawn). matplotlib is hidden while
    the package loads (the import fails, and Optuna tolerates that), then the subpackage loaded
    without it is forgotten: `optuna.visualization.matplotlib`, imported or reached as an
    attribute, then loads whole on first use."""
    if "optuna.visualization" in sys.modules or "matplotlib" in sys.modules:
        return importlib.import_module("optuna.visualization")
    sys.modules["matplotlib"] = None  # type: ignore[assignment]  # import matplotlib: ImportError
    try:
        views = importlib.import_module("optuna.visualization")
    finally:
        del sys.modules["matplotlib"]
        for name in [m for m in sys.modules if m == _MPL_VIEWS or m.startswith(_MPL_VIEWS + ".")]:
            del sys.modules[name]
    views.__dict__.pop("matplotlib", None)
    views.__dict__["__getattr__"] = _load_on_access  # PEP 562: asked when a name is missing
    return views


def _load_on_access(name: str) -> ModuleType:
    """`optuna.visualization.matplotlib` reached as an attribute after `plotly_views`."""
    if name == "matplotlib":
        return importlib.import_module(_MPL_VIEWS)  # the import binds the attribute too
    raise AttributeError(f"module 'optuna.visualization' has no attribute {name!r}")
