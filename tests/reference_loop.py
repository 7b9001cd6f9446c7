"""The textbook training loop that tuner's packed loop must match: one `nn.Sequential`, a
`torch.optim` optimizer and torch's own schedulers, batches sliced from a per-epoch permutation.
The equivalence tests (test_packs.py) train the same trial here and in a pack and compare every
epoch's metrics and the kept weights."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn

from tuner.data import Dataset
from tuner.space import EarlyStopping, Loss, TrialConfig
from tuner.training import FitResult, build_mlp, criterion, evaluate
from tuner.training._device import on_device
from tuner.training._fit import _PERMUTE_LIMIT_BYTES, Callback, NonFiniteLoss, Watch, batch_plan


def reference_fit(
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
    """Train one MLP the textbook way (torch.optim, torch's schedulers, one model), as tuner's
    `fit` did before it became a pack of one. The returned model holds the best monitored epoch's weights when
    early stopping restores them, else the last epoch's. Without validation rows (a final model
    trained on train + validation) only `train_loss` is reported per epoch."""
    device = torch.device(device or "cpu")
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


def build_optimizer(config: TrialConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    # Fused kernels run the whole update in one call per step on the CPU (torch >= 2.4).
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum,
            # Nesterov needs momentum; with momentum 0 it is plain SGD, so the flag is dropped.
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay, fused=True,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, momentum=config.momentum,
                                   weight_decay=config.weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def build_scheduler(
    config: TrialConfig, optimizer: torch.optim.Optimizer, max_epochs: int
) -> tuple[torch.optim.lr_scheduler.LRScheduler | None, bool]:
    """The schedule and whether it steps per batch (True) or per epoch (False)."""
    if config.lr_schedule == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=1.0 - config.lr_decay), False
    if config.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs), False
    if config.lr_schedule == "inverse_time":
        # Keras' classic `decay`: lr / (1 + decay * iterations), applied every batch.
        decay = config.lr_decay
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0 / (1.0 + decay * it)), True
    return None, False
