"""The training loop: tensors in memory, batches sliced from a per-epoch permutation.

It knows nothing about Optuna or MLflow: it emits per-epoch events to callbacks, which may raise
to stop training (pruning, interruption). Validation runs under `inference_mode` in large batches.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from tuner.data import Dataset, Split, classification_metrics, regression_metrics
from tuner.space import EarlyStopping, Loss, Space, TrialConfig, is_better
from tuner.training._device import on_device
from tuner.training._memory import check_fits
from tuner.training._model import build_mlp, build_optimizer, build_scheduler

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


def fit(
    config: TrialConfig,
    data: Dataset,
    *,
    max_epochs: int,
    early_stopping: EarlyStopping | None,
    seed: int,
    callbacks: Sequence[Callback] = (),
    monitor: str | None = None,
    monitor_direction: str = "maximize",
    loss: Loss | None = None,
    device: torch.device | str | None = None,
) -> FitResult:
    """Train one MLP. The returned model holds the best monitored epoch's weights when
    early stopping restores them, else the last epoch's. Without validation rows (a final model
    trained on train + validation) only `train_loss` is reported per epoch."""
    device = torch.device(device or "cpu")
    check_fits(config, data.n_features, data.n_outputs, batch_plan(config, len(data.train))[0],
               device)
    data = on_device(data, device)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_mlp(config, data.n_features, data.n_outputs).to(device)
    optimizer = build_optimizer(config, list(model.parameters()))
    scheduler, per_batch = build_scheduler(config, optimizer, max_epochs)
    loss_fn = criterion(data, loss).to(device)
    watch = Watch.of(data, early_stopping, monitor, monitor_direction)
    x, y = data.train.x, data.train.y
    n = len(data.train)
    batch, stop = batch_plan(config, n)

    permute = x.element_size() * x.numel() <= _PERMUTE_LIMIT_BYTES
    steps = -(-stop // batch)
    # Per-batch losses stay tensors until the epoch ends: no Python float per step.
    sizes = torch.full((steps,), float(batch), device=device)
    sizes[-1] = stop - (steps - 1) * batch

    result = FitResult(model)
    best_state: dict[str, torch.Tensor] | None = None
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        xs, ys = (x[order], y[order]) if permute else (x, y)
        losses = []
        for start in range(0, stop, batch):
            if permute:
                xb, yb = xs[start:start + batch], ys[start:start + batch]
            else:
                idx = order[start:start + batch]
                xb, yb = x[idx], y[idx]
            batch_loss = loss_fn(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            if per_batch and scheduler is not None:
                scheduler.step()
            losses.append(batch_loss.detach())
        if scheduler is not None and not per_batch:
            scheduler.step()
        train_loss = float((torch.stack(losses) * sizes).sum()) / stop
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(epoch, train_loss)
        metrics = {"train_loss": train_loss}
        if len(data.val):
            metrics.update(evaluate(model, data, data.val, prefix="val_", loss_fn=loss_fn))
        result.history.append(metrics)
        result.epochs_run = epoch
        if watch.improved(epoch, metrics) and watch.keeps_best:
            best_state = copy.deepcopy(model.state_dict())
        for callback in callbacks:
            callback.on_epoch_end(epoch, metrics)
        if watch.should_stop:
            result.stopped_early = True
            break
    result.best_epoch = watch.best_epoch
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = result.epochs_run
    return result


_SPACE = object()  # `train`'s default early stopping: the space's own


def train(space: Space, params: Mapping[str, Any], data: Dataset, seed: int, *,
          max_epochs: int | None = None, early_stopping: Any = _SPACE,
          callbacks: Sequence[Callback] = (), device: torch.device | str | None = None
          ) -> FitResult:
    """Train one configuration of `space` (its parameters and torch seed) on `data`: a trial,
    the retraining of a trial kept by no process, a final model. The one place where a
    configuration becomes a model, so the same parameters and seed give the same weights."""
    return fit(TrialConfig.from_params(params), data,
               max_epochs=max_epochs or space.training.max_epochs,
               early_stopping=space.training.early_stopping if early_stopping is _SPACE
               else early_stopping,
               seed=seed, callbacks=callbacks, monitor=space.objective.key,
               monitor_direction=space.objective.direction, loss=space.training.loss,
               device=device)


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


def row_losses(data: Dataset, loss: Loss | None = None
               ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss per row (the criterion with `reduction="none"`; class-weighted rows
    carry their weight): out (..., outputs), target (...) -> (...)."""
    if data.task == "classification":
        weight = None if data.class_weights is None else torch.tensor(data.class_weights,
                                                                      dtype=torch.float32)

        def cross_entropy(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            w = None if weight is None else weight.to(out.device)
            flat = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                               target.reshape(-1), weight=w, reduction="none")
            return flat.view(target.shape)
        return cross_entropy
    name = loss.name if loss is not None else "mse"
    delta = loss.huber_delta if loss is not None else 1.0

    def regression(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = out.squeeze(-1)
        if name == "mae":
            return nn.functional.l1_loss(pred, target, reduction="none")
        if name == "huber":
            return nn.functional.huber_loss(pred, target, reduction="none", delta=delta)
        return nn.functional.mse_loss(pred, target, reduction="none")
    return regression


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
