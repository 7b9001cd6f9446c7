"""Training: the MLP, its optimizer and schedule, the training loop, several trials trained at once
as one stacked model (packs), custom trainers, devices, and what a trained model costs (parameter
count, latency).

It imports neither Optuna nor MLflow: the loop emits per-epoch events to callbacks (pruning,
tracking and the stop flag are callbacks that the execution layer hands in), which may raise to
stop training.

Names load on first use: a process that only unpickles a model (the MLflow writer process logs
the study's final model) imports the model's module, not the training loop, the data layer and
scikit-learn (a second or two on the study's critical path).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "Refit": "_custom",
    "Reporter": "_custom",
    "Trainer": "_custom",
    "final_metrics": "_custom",
    "load_trainer": "_custom",
    "refit_hook": "_custom",
    "resolve": "_custom",
    "using": "_custom",
    "DEVICES": "_device",
    "on_device": "_device",
    "resolve_device": "_device",
    "Ensemble": "_ensemble",
    "average_outputs": "_ensemble",
    "Callback": "_fit",
    "FitResult": "_fit",
    "NonFiniteLoss": "_fit",
    "criterion": "_fit",
    "evaluate": "_fit",
    "predict": "_fit",
    "score": "_fit",
    "latency_ms_per_1k": "_measures",
    "parameter_count": "_measures",
    "ModelTooLarge": "_memory",
    "check_fits": "_memory",
    "training_budget": "_memory",
    "training_bytes": "_memory",
    "RawRowScorer": "_model",
    "ScoringModel": "_model",
    "build_mlp": "_model",
    "Finished": "_pack",
    "Pack": "_pack",
    "PackedTrial": "_pack",
    "fit_packed": "_pack",
    "micro_batch": "_pack_plan",
    "pack_key": "_pack_plan",
    "pack_size": "_pack_plan",
    "fit": "_train",
    "train": "_train",
}

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


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"tuner.training.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tuner.training' has no attribute {name!r}")
