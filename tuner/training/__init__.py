"""Training: the MLP, its optimizer and schedule, the training loop, custom trainers, and what a
trained model costs (parameter count, latency).

It imports neither Optuna nor MLflow: the loop emits per-epoch events to callbacks (pruning,
tracking and the stop flag are callbacks that the execution layer hands in), which may raise to
stop training.
"""

from tuner.training._custom import (
    Refit,
    Reporter,
    Trainer,
    final_metrics,
    load_trainer,
    refit_hook,
    resolve,
    using,
)
from tuner.training._ensemble import Ensemble, average_outputs
from tuner.training._fit import (
    Callback,
    FitResult,
    NonFiniteLoss,
    criterion,
    evaluate,
    fit,
    predict,
    score,
    train,
)
from tuner.training._measures import latency_ms_per_1k, parameter_count
from tuner.training._model import RawRowScorer, ScoringModel, build_mlp, build_optimizer

__all__ = [
    "Callback", "Ensemble", "FitResult", "NonFiniteLoss", "RawRowScorer", "Refit", "Reporter",
    "ScoringModel", "Trainer", "average_outputs", "build_mlp", "build_optimizer", "criterion",
    "evaluate", "final_metrics", "fit", "latency_ms_per_1k", "load_trainer", "parameter_count",
    "predict", "refit_hook", "resolve", "score", "train", "using",
]
