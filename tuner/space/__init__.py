"""The space file: strict YAML, parsed once into frozen, self-validating objects.

`load_space(path)` / `parse_space(text)` give a `Space`: its data section (`DataSpec`), objective(s),
training settings, study defaults and parameters (`ParameterSpace`: one definition feeds the
samplers and the grid). Every problem is a one-line `SpaceError` naming file, line and key.
"""

from tuner.space._data import BUNDLED, DataSpec, SyntheticSpec
from tuner.space._final import FinalSpec, ReevaluationPlan
from tuner.space._grid import GRID_LIMIT, Grid
from tuner.space._hyperparameters import HYPERPARAMETERS, TrialConfig, check_value
from tuner.space._metrics import METRICS, Metric, is_better, metrics_for
from tuner.space._parameters import ParameterSpace
from tuner.space._params import (
    MAX_GRID_POINTS,
    CategoricalParam,
    Condition,
    FixedParam,
    FloatParam,
    IntParam,
    Param,
    Scalar,
)
from tuner.space._spec import (
    EXTRA_OBJECTIVES,
    MULTI_STRATEGIES,
    PRUNERS,
    STRATEGIES,
    Constraint,
    EarlyStopping,
    Loss,
    Objective,
    PrunerSpec,
    Space,
    StudyDefaults,
    Training,
    check_points,
    load_space,
    parse_space,
)
from tuner.space._yaml import Document, load_yaml

__all__ = [
    "BUNDLED",
    "EXTRA_OBJECTIVES",
    "GRID_LIMIT",
    "HYPERPARAMETERS",
    "MAX_GRID_POINTS",
    "METRICS",
    "MULTI_STRATEGIES",
    "PRUNERS",
    "STRATEGIES",
    "CategoricalParam",
    "Condition",
    "Constraint",
    "DataSpec",
    "Document",
    "EarlyStopping",
    "FinalSpec",
    "FixedParam",
    "FloatParam",
    "Grid",
    "IntParam",
    "Loss",
    "Metric",
    "Objective",
    "Param",
    "ParameterSpace",
    "PrunerSpec",
    "ReevaluationPlan",
    "Scalar",
    "Space",
    "StudyDefaults",
    "SyntheticSpec",
    "Training",
    "TrialConfig",
    "check_points",
    "check_value",
    "is_better",
    "load_space",
    "load_yaml",
    "metrics_for",
    "parse_space",
]
