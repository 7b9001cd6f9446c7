"""tuner: hyperparameter tuning for PyTorch MLPs.

Search spaces come from YAML files, Optuna runs the studies, MLflow tracks every trial.

>>> import tuner
>>> space = tuner.load_space("search_spaces/digits_mlp.yaml")
>>> space.objective.key
'val_accuracy'

Heavy modules (torch, mlflow) load on first use, so `tuner validate` answers quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tuner._errors import DataError, SpaceError, StorageError, TunerError
from tuner._spec import Space, load_space, parse_space

if TYPE_CHECKING:
    from tuner._runner import RunOptions, StudyResult, run_study

__version__ = "0.1.0"

_LAZY = {"RunOptions": "tuner._runner", "StudyResult": "tuner._runner",
         "run_study": "tuner._runner"}

__all__ = [
    "DataError",
    "RunOptions",
    "Space",
    "SpaceError",
    "StorageError",
    "StudyResult",
    "TunerError",
    "__version__",
    "load_space",
    "parse_space",
    "run_study",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")
