"""The MLP hyperparameters a space may search, their defaults, and the frozen per-trial config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu", "selu", "silu")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
LR_SCHEDULES = ("constant", "exponential", "cosine", "inverse_time")
MAX_LAYERS = 16

# name -> (default, allowed values or None for free numbers)
HYPERPARAMETERS: dict[str, tuple[Any, tuple[Any, ...] | None]] = {
    "n_layers": (2, None),
    "units": (128, None),
    "activation": ("relu", ACTIVATIONS),
    "dropout": (0.0, None),
    "batch_norm": (False, (True, False)),
    "optimizer": ("adam", OPTIMIZERS),
    "lr": (1e-3, None),
    "momentum": (0.0, None),
    "nesterov": (False, (True, False)),
    "weight_decay": (0.0, None),
    "lr_schedule": ("constant", LR_SCHEDULES),
    "lr_decay": (0.0, None),
    "batch_size": (64, None),
}
# Bounds that hold for any sampled value (checked on the space's bounds and choices).
_NUMERIC_BOUNDS: dict[str, tuple[float, float]] = {
    "n_layers": (1, MAX_LAYERS),
    "units": (1, 1 << 16),
    "dropout": (0.0, 0.99),
    "lr": (1e-12, 10.0),
    "momentum": (0.0, 0.9999),
    "weight_decay": (0.0, 1.0),
    "lr_decay": (0.0, 1.0),
    "batch_size": (1, 1 << 20),
}
INTEGER_PARAMS = frozenset({"n_layers", "units", "batch_size"})


def check_value(name: str, value: Any) -> str | None:
    """Why `value` cannot be used for hyperparameter `name`, or None if it can."""
    _, allowed = HYPERPARAMETERS[name]
    if allowed is not None:
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            return f"unknown {name} {value!r}; choose from {list(allowed)}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{name} must be a number, got {value!r}"
    if name in INTEGER_PARAMS and not float(value).is_integer():
        return f"{name} must be an integer, got {value!r}"
    low, high = _NUMERIC_BOUNDS[name]
    if not low <= value <= high:
        return f"{name} must lie in [{low:g}, {high:g}], got {value!r}"
    return None


@dataclass(frozen=True)
class TrialConfig:
    """Everything that defines one MLP training run, parsed once from a trial's parameters."""

    units: tuple[int, ...] = (128, 128)
    activation: str = "relu"
    dropout: float = 0.0
    batch_norm: bool = False
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_decay: float = 0.0
    batch_size: int = 64
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrialConfig:
        values = {name: default for name, (default, _) in HYPERPARAMETERS.items()}
        values.update({k: v for k, v in params.items() if k in HYPERPARAMETERS})
        n_layers = int(values.pop("n_layers"))
        default_units = int(values.pop("units"))
        units = tuple(int(params.get(f"units_{i}", default_units)) for i in range(n_layers))
        extra = {k: v for k, v in params.items() if k not in HYPERPARAMETERS
                 and not k.startswith("units_")}
        return cls(
            units=units,
            activation=str(values["activation"]),
            dropout=float(values["dropout"]),
            batch_norm=bool(values["batch_norm"]),
            optimizer=str(values["optimizer"]),
            lr=float(values["lr"]),
            momentum=float(values["momentum"]),
            nesterov=bool(values["nesterov"]),
            weight_decay=float(values["weight_decay"]),
            lr_schedule=str(values["lr_schedule"]),
            lr_decay=float(values["lr_decay"]),
            batch_size=int(values["batch_size"]),
            extra=extra,
        )
