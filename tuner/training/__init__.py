"""Training: the MLP, its optimizer and schedule, the training loop, several trials trained at once
as one stacked model (packs), custom trainers, devices, and what a trained model costs (parameter
count, latency).

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
from tuner.training._device import DEVICES, on_device, resolve_device
from tuner.training._ensemble import Ensemble, average_outputs
from tuner.training._fit import (
    Callback,
    FitResult,
    NonFiniteLoss,
    criterion,
    evaluate,
    predict,
    score,
)
from tuner.training._measures import latency_ms_per_1k, parameter_count
from tuner.training._memory import ModelTooLarge, check_fits, training_budget, training_bytes
from tuner.training._model import RawRowScorer, ScoringModel, build_mlp
from tuner.training._pack import (
    Finished,
    Pack,
    PackedTrial,
    fit_packed,
)
from tuner.training._pack_plan import micro_batch, pack_key, pack_size
from tuner.training._train import fit, train

__all__ = [
    "DEVICES",
    "Callback",
    "Ensemble",
    "Finished",
    "FitResult",
    "ModelTooLarge",
    "NonFiniteLoss",
    "Pack",
    "PackedTrial",
    "RawRowScorer",
    "Refit",
    "Reporter",
    "ScoringModel",
    "Trainer",
    "average_outputs",
    "build_mlp",
    "check_fits",
    "criterion",
    "evaluate",
    "final_metrics",
    "fit",
    "fit_packed",
    "latency_ms_per_1k",
    "load_trainer",
    "micro_batch",
    "on_device",
    "pack_key",
    "pack_size",
    "parameter_count",
    "predict",
    "refit_hook",
    "resolve",
    "resolve_device",
    "score",
    "train",
    "training_budget",
    "training_bytes",
    "using",
]
