"""Building the MLP from a frozen TrialConfig, and the trained MLP as the model a study logs
(torch only). Its optimizer steps are the stacked loop's (`_stack.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tuner.space import TrialConfig

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
}


def build_mlp(config: TrialConfig, n_features: int, n_outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_features
    for units in config.units:
        layers.append(nn.Linear(width, units))
        if config.batch_norm:
            layers.append(nn.BatchNorm1d(units))
        layers.append(_ACTIVATIONS[config.activation]())
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = units
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


class ScoringModel(nn.Module):
    """The trained MLP with its preprocessing, so raw feature rows can be scored directly.

    Classification returns class probabilities; regression returns the target in its own units.
    """

    def __init__(self, mlp: nn.Module, mean: np.ndarray, scale: np.ndarray, task: str,
                 target_mean: float = 0.0, target_scale: float = 1.0):
        super().__init__()
        self.mlp = mlp
        self.task = task
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_scale", torch.tensor(float(target_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, scale = self.get_buffer("mean"), self.get_buffer("scale")
        out = self.mlp((x - mean) / scale)
        if self.task == "classification":
            return torch.softmax(out, dim=1)
        return out.squeeze(1) * self.get_buffer("target_scale") + self.get_buffer("target_mean")


class RawRowScorer:
    """A fitted scikit-learn preprocessing pipeline in front of a `ScoringModel`: scores a
    DataFrame of rows as the file had them (categorical text, missing values and all).

    Logged as an MLflow pyfunc model next to the PyTorch one; it returns class probabilities
    (one column per class) or the predicted target (column `prediction`).
    """

    def __init__(self, preprocessor: Any, model: ScoringModel, classes: Sequence[str]):
        self.preprocessor = preprocessor
        self.model = model
        self.classes = list(classes)

    # MLflow reads this signature: a DataFrame in, a DataFrame out.
    def __call__(self, rows: pd.DataFrame) -> pd.DataFrame:
        x = torch.as_tensor(self.preprocessor.transform(rows), dtype=torch.float32)
        self.model.eval()
        with torch.inference_mode():
            out = self.model(x).numpy().astype(np.float64)
        if self.model.task == "classification":
            return pd.DataFrame(out, columns=self.classes)
        return pd.DataFrame({"prediction": out})
