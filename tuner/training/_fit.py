"""What every training run shares: the callbacks' protocol and a run's result, early-stopping
bookkeeping, the batch plan, the losses, and scoring a model's outputs (validation runs under
`inference_mode` in large batches). The loop itself is the packed one (`_pack.py`); `fit`
(`_train.py`) trains one trial as a pack of one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from tuner.data import Dataset, Split, classification_metrics, regression_metrics
from tuner.space import EarlyStopping, Loss, TrialConfig, is_better
from tuner.training._grad import without_grad

_EVAL_BATCH = 8192
# Up to this size the rows are permuted once per epoch and batches are contiguous slices
# (one gather per epoch instead of one per batch); above it, the per-epoch copy would cost more
# memory than it saves time, so batches gather their rows from the shared tensor.
_PERMUTE_LIMIT_BYTES = 256 << 20


class Callback(Protocol):
    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None: ...


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the run cannot continue."""

    def __init__(self, epoch: int, value: float):
        super().__init__(f"non-finite training loss ({value}) in epoch {epoch}")
        self.epoch = epoch
        self.value = value


@dataclass
class FitResult:
    model: nn.Sequential
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    stopped_early: bool = False

    @property
    def best_metrics(self) -> dict[str, float]:
        return self.history[self.best_epoch - 1] if self.history else {}


@dataclass
class Watch:
    """Early-stopping bookkeeping of one training run: the best monitored epoch so far and the
    epochs since it improved (shared by `fit` and the packed loop, so both judge alike)."""

    monitor: str | None
    direction: str
    early_stopping: EarlyStopping | None
    best_value: float | None = None
    best_epoch: int = 0
    stale: int = 0

    @classmethod
    def of(cls, data: Dataset, early_stopping: EarlyStopping | None, monitor: str | None,
           direction: str) -> Watch:
        if not len(data.val):
            early_stopping = None  # nothing to monitor
        if early_stopping is not None:
            monitor, direction = f"val_{early_stopping.monitor}", early_stopping.direction
        return cls(monitor, direction, early_stopping)

    @property
    def keeps_best(self) -> bool:
        return self.early_stopping is not None and self.early_stopping.restore_best_weights

    def improved(self, epoch: int, metrics: Mapping[str, float]) -> bool:
        """Record an epoch; True if it is the best so far (its weights are worth keeping)."""
        value = metrics.get(self.monitor) if self.monitor else None
        if value is not None and math.isfinite(value) and is_better(
                self.direction, value, self.best_value,
                self.early_stopping.min_delta if self.early_stopping else 0.0):
            self.best_value, self.best_epoch, self.stale = value, epoch, 0
            return True
        self.stale += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.early_stopping is not None and self.stale >= self.early_stopping.patience


def batch_plan(config: TrialConfig, n: int) -> tuple[int, int]:
    """(rows per batch, rows used per epoch): a batch of one row breaks batch norm's
    statistics, so such a tail is skipped."""
    batch = max(1, min(config.batch_size, n))
    stop = n - 1 if config.batch_norm and n % batch == 1 and n > batch else n
    return batch, stop


class _RegressionLoss(nn.Module):
    """A loss on a single-output head: the (n, 1) output is compared with the (n,) target."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(out.squeeze(-1), target)


def criterion(data: Dataset, loss: Loss | None = None) -> nn.Module:
    """The training loss: cross-entropy (with the data's class weights, if any) for classes;
    MSE, MAE or Huber on the standardised target for regression."""
    if data.task == "classification":
        weight = None if data.class_weights is None else torch.tensor(data.class_weights,
                                                                      dtype=torch.float32)
        return nn.CrossEntropyLoss(weight=weight)
    name = loss.name if loss is not None else "mse"
    if name == "mae":
        return _RegressionLoss(nn.L1Loss())
    if name == "huber":
        return _RegressionLoss(nn.HuberLoss(delta=loss.huber_delta if loss else 1.0))
    return _RegressionLoss(nn.MSELoss())


class RowLoss:
    """The training loss per row: the criterion with `reduction="none"` (class-weighted rows
    carry their weight), out (K, B, outputs), target (K, B) -> (K, B). Called, it records
    autograd's graph; `value_and_grad` gives the rows' losses and the gradient of
    `sum(scale * rows)` with respect to `out`, by the kernels autograd's backward calls, for
    the stack's written-out backward pass."""

    def __init__(self, data: Dataset, loss: Loss | None = None):
        self.classification = data.task == "classification"
        self.weight = None if data.class_weights is None or not self.classification else \
            torch.tensor(data.class_weights, dtype=torch.float32)
        self.name = loss.name if loss is not None else "mse"
        self.delta = loss.huber_delta if loss is not None else 1.0

    def __call__(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.classification:
            w = None if self.weight is None else self.weight.to(out.device)
            flat = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                               target.reshape(-1), weight=w, reduction="none")
            return flat.view(target.shape)
        pred = out.squeeze(-1)
        if self.name == "mae":
            return nn.functional.l1_loss(pred, target, reduction="none")
        if self.name == "huber":
            return nn.functional.huber_loss(pred, target, reduction="none", delta=self.delta)
        return nn.functional.mse_loss(pred, target, reduction="none")

    @without_grad
    def value_and_grad(self, out: torch.Tensor, target: torch.Tensor, scale: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        aten = torch.ops.aten
        if self.classification:  # cross_entropy is log_softmax, then nll_loss
            w = None if self.weight is None else self.weight.to(out.device)
            log_p = torch.log_softmax(out.reshape(-1, out.shape[-1]), dim=1)
            flat_target = target.reshape(-1)
            rows, total = aten.nll_loss_forward(log_p, flat_target, w, 0, -100)
            grad = aten.nll_loss_backward(scale.reshape(-1), log_p, flat_target, w, 0, -100,
                                          total)
            grad = aten._log_softmax_backward_data(grad, log_p, 1, log_p.dtype)
            return rows.view(target.shape), grad.view(out.shape)
        pred = out.squeeze(-1)
        if self.name == "mae":  # |pred - target|
            diff = pred - target
            rows, grad = diff.abs(), scale * diff.sgn()
        elif self.name == "huber":
            rows = nn.functional.huber_loss(pred, target, reduction="none", delta=self.delta)
            grad = aten.huber_loss_backward(scale, pred, target, 0, self.delta)
        else:
            rows = nn.functional.mse_loss(pred, target, reduction="none")
            grad = aten.mse_loss_backward(scale, pred, target, 0)
        return rows, grad.unsqueeze(-1)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's outputs for x, in batches, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        outs = [model(x[i:i + _EVAL_BATCH].to(device)) for i in range(0, x.shape[0], _EVAL_BATCH)]
    return torch.cat(outs) if outs else torch.empty(0)


def evaluate(model: nn.Module, data: Dataset, split: Split, prefix: str = "",
             loss_fn: nn.Module | None = None) -> dict[str, float]:
    """The loss and every metric of the task on one split (regression metrics in original
    units). `loss_fn` defaults to the data's default criterion."""
    if not len(split):
        return {}
    return score(data, split, predict(model, split.x), prefix, loss_fn)


def score(data: Dataset, split: Split, out: torch.Tensor, prefix: str = "",
          loss_fn: nn.Module | None = None) -> dict[str, float]:
    """The loss and every metric of a model's outputs `out` on `split` (outputs computed
    already: a pack's, an ensemble's averaged outputs)."""
    if data.task == "regression":
        out = out.squeeze(1)
    y = split.y.to(out.device)
    with torch.inference_mode():
        loss = float((loss_fn or criterion(data)).to(out.device)(out, y))
    y_true = split.y.cpu().numpy()
    scores = out.cpu().numpy()
    if data.task == "regression":
        values = regression_metrics(data.to_original_units(y_true.astype(np.float64)),
                                    data.to_original_units(scores.astype(np.float64)))
    else:
        values = classification_metrics(y_true, scores)
    return {f"{prefix}loss": loss, **{f"{prefix}{k}": v for k, v in values.items()}}
