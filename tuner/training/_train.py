"""Training one configuration: `fit` trains one trial as a pack of one, so a trial trained alone
and the same trial trained beside others run the same loop, and training builds no `torch.optim`
optimizer (the first one loads torch's compiler: 1-3 s on the study's path);
`train` is the one place where a configuration of a space becomes a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tuner.data import Dataset
from tuner.space import EarlyStopping, Loss, Space, TrialConfig
from tuner.training._fit import Callback, FitResult, batch_plan
from tuner.training._memory import check_fits
from tuner.training._pack import PackedTrial, fit_packed


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
    """Train one MLP. The returned model holds the best monitored epoch's weights when early
    stopping restores them, else the last epoch's. Without validation rows (a final model
    trained on train + validation) only `train_loss` is reported per epoch. What a callback
    raises (pruning, interruption) and `NonFiniteLoss` propagate."""
    device = torch.device(device or "cpu")
    check_fits(config, data.n_features, data.n_outputs, batch_plan(config, len(data.train))[0],
               device)
    [done] = fit_packed([PackedTrial("fit", config, seed, callbacks)], data,
                        max_epochs=max_epochs, early_stopping=early_stopping, monitor=monitor,
                        monitor_direction=monitor_direction, loss=loss, device=device)
    if done.error is not None:
        raise done.error
    assert done.result is not None
    return done.result


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
