"""Every use of Optuna beyond its public API, in one place.

tuner claims queued trials itself (several workers, one budget), re-queues a trial with the
parameters it was queued with, finds a trial's storage id and the NSGA-II generation it was
asked in; Optuna offers no public call for these. It also loads Optuna's plotly views without
the matplotlib import that comes with them, and its importance evaluators without scikit-learn.
tests/test_optuna_internals.py pins each behaviour, so an Optuna upgrade that changes one fails
there, loudly, and this file is the one to mend.
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
    a second at the end of every study, for PNGs that are not drawn). The subpackage loaded
    without matplotlib is forgotten: `optuna.visualization.matplotlib`, imported or reached as
    an attribute, then loads whole on first use."""
    return _load_without("optuna.visualization", "matplotlib",
                         {"matplotlib": _MPL_VIEWS})


def importance_module() -> ModuleType:
    """`optuna.importance`, loaded without scikit-learn: its `__init__` imports the fANOVA and
    mean-decrease-impurity evaluators, whose modules import scikit-learn's forests inside a
    `try_import` (with SciPy, about a second), although PED-ANOVA needs neither. Those two
    evaluators, loaded without it, are forgotten, and load whole, with scikit-learn, on first
    use."""
    return _load_without("optuna.importance", "sklearn", {
        "FanovaImportanceEvaluator": "optuna.importance._fanova",
        "MeanDecreaseImpurityImportanceEvaluator": "optuna.importance._mean_decrease_impurity",
        "_fanova": "optuna.importance._fanova",
        "_mean_decrease_impurity": "optuna.importance._mean_decrease_impurity",
    })


def _load_without(package: str, hidden: str, later: dict[str, str]) -> ModuleType:
    """Import `package` while `hidden` cannot be imported (Optuna tolerates that: it records
    the failure in the modules that try it), then forget those modules and the names bound
    from them (`later`: name -> module), so that each loads whole, on first use, through the
    package's `__getattr__`. A no-op once either module is loaded."""
    if package in sys.modules or hidden in sys.modules:
        return importlib.import_module(package)
    sys.modules[hidden] = None  # type: ignore[assignment]  # import HIDDEN: ImportError
    try:
        loaded = importlib.import_module(package)
    finally:
        del sys.modules[hidden]
        tried = set(later.values())
        for name in [m for m in sys.modules
                     if m in tried or m.startswith(tuple(t + "." for t in tried))]:
            del sys.modules[name]
    for name in later:
        loaded.__dict__.pop(name, None)

    def load_on_access(name: str) -> Any:  # PEP 562: asked when a name is missing
        if name not in later:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(later[name])  # binds a submodule's attribute too
        found = module if module.__name__.endswith("." + name) else getattr(module, name)
        setattr(loaded, name, found)
        return found

    loaded.__dict__["__getattr__"] = load_on_access
    return loaded
