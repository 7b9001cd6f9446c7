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

from tuner.errors import DataError, OptionError, SpaceError, StorageError, TunerError
from tuner.space import Space, load_space, parse_space

if TYPE_CHECKING:
    from tuner.analysis import Comparison
    from tuner.api import (
        compare,
        evaluate,
        export,
        importances,
        open_study,
        pareto_front,
        pick,
        run_study,
        runs,
        train,
        trials,
    )
    from tuner.execution import (
        CompareOptions,
        FinalOptions,
        FinalResult,
        RunOptions,
        StudyResult,
        WorkerOptions,
    )
    from tuner.search import FrontMember
    from tuner.training import Reporter

__version__ = "0.1.0"

# The Python API (tuner.api) and its option and result types load on first use.
_LAZY = {name: "tuner.api" for name in ("compare", "evaluate", "export", "importances",
                                        "open_study", "pareto_front", "pick", "run_study",
                                        "runs", "train", "trials")}
_LAZY.update({name: "tuner.execution" for name in (
    "CompareOptions", "FinalOptions", "FinalResult", "RunOptions", "StudyResult",
    "WorkerOptions")})
_LAZY.update({"Reporter": "tuner.training", "FrontMember": "tuner.search",
              "Comparison": "tuner.analysis"})

__all__ = [
    "CompareOptions",
    "Comparison",
    "DataError",
    "FinalOptions",
    "FinalResult",
    "FrontMember",
    "OptionError",
    "Reporter",
    "RunOptions",
    "Space",
    "SpaceError",
    "StorageError",
    "StudyResult",
    "TunerError",
    "WorkerOptions",
    "__version__",
    "compare",
    "evaluate",
    "export",
    "importances",
    "load_space",
    "open_study",
    "pareto_front",
    "parse_space",
    "pick",
    "run_study",
    "runs",
    "train",
    "trials",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")
