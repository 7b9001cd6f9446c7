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
    from tuner._compare import CompareOptions, Comparison
    from tuner._custom import Reporter
    from tuner._final import FinalOptions, FinalResult
    from tuner._multi import FrontMember
    from tuner._runner import RunOptions, StudyResult
    from tuner.api import (
        compare,
        evaluate,
        export,
        open_study,
        pareto_front,
        pick,
        run_study,
        runs,
        trials,
    )

__version__ = "0.1.0"

_LAZY = {"RunOptions": "tuner._runner", "StudyResult": "tuner._runner",
         "run_study": "tuner.api"}
# The Python API (custom objectives, multi-objective fronts, stored studies and runs).
_LAZY.update({name: "tuner.api" for name in ("compare", "evaluate", "export", "open_study",
                                             "pareto_front", "pick", "runs", "trials")})
_LAZY.update({"Reporter": "tuner._custom", "FrontMember": "tuner._multi",
              "CompareOptions": "tuner._compare", "Comparison": "tuner._compare",
              "FinalOptions": "tuner._final", "FinalResult": "tuner._final"})

__all__ = [
    "CompareOptions",
    "Comparison",
    "DataError",
    "FinalOptions",
    "FinalResult",
    "FrontMember",
    "Reporter",
    "RunOptions",
    "Space",
    "SpaceError",
    "StorageError",
    "StudyResult",
    "TunerError",
    "__version__",
    "compare",
    "evaluate",
    "export",
    "load_space",
    "open_study",
    "pareto_front",
    "parse_space",
    "pick",
    "run_study",
    "runs",
    "trials",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuner' has no attribute {name!r}")
