"""Custom objectives: a user's own training function in place of the built-in MLP.

The function takes the sampled parameters and a `Reporter`, and returns the objective value, a
mapping of metrics, or None (then the best reported epoch counts). Each `report(epoch, metrics)`
feeds the callbacks the built-in loop feeds (MLflow, the pruner, the stop flag), so pruning,
tracking and Ctrl-C behave the same; the reporter keeps the early-stopping bookkeeping.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from tuner.errors import TunerError
from tuner.space import is_better
from tuner.training._fit import Callback


class Trainer(Protocol):
    def __call__(self, params: Mapping[str, Any], reporter: Reporter
                 ) -> float | Mapping[str, float] | None: ...


class Reporter:
    """Handed to a custom trainer: report each epoch's metrics; stop when `should_stop`."""

    def __init__(self, key: str, direction: str, *, max_epochs: int, patience: int | None,
                 min_delta: float = 0.0, seed: int = 0, trial_number: int = 0,
                 callbacks: tuple[Callback, ...] = ()):
        self.key = key
        self.direction = direction
        self.max_epochs = max_epochs
        self.patience = patience
        self.min_delta = min_delta
        self.seed = seed  # a trainer that seeds torch with it is reproducible per trial
        self.trial_number = trial_number
        self.callbacks = callbacks
        self.epochs = 0
        self.best_value: float | None = None
        self.best_epoch = 0
        self.best_metrics: dict[str, float] = {}
        self._since_best = 0

    def report(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Record one epoch. May raise `optuna.TrialPruned` or stop the run at the user's
        Ctrl-C: let it propagate (tuner records the trial accordingly)."""
        values = {k: float(v) for k, v in metrics.items()}
        if self.key not in values:
            raise TunerError(f"the trainer reported epoch {epoch} without the objective "
                             f"{self.key!r} (got {', '.join(sorted(values)) or 'nothing'})")
        self.epochs += 1  # epochs reported so far (numbered as the trainer likes, from 1)
        value = values[self.key]
        if math.isfinite(value) and is_better(self.direction, value, self.best_value,
                                              self.min_delta):
            self.best_value, self.best_epoch, self.best_metrics = value, epoch, values
            self._since_best = 0
        else:
            self._since_best += 1
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, values)

    @property
    def should_stop(self) -> bool:
        """True once `patience` epochs passed without improving, or `max_epochs` ran."""
        if self.epochs >= self.max_epochs:
            return True
        return self.patience is not None and self._since_best >= self.patience


class Refit(Protocol):
    """A custom trainer's optional refit hook, its attribute `refit`: train the chosen
    configuration on all the training rows (train + validation) for `epochs` epochs with `seed`,
    evaluate it once on the trainer's own test split, and return those test metrics."""

    def __call__(self, params: Mapping[str, Any], seed: int, epochs: int) -> Mapping[str, float]: ...


def refit_hook(trainer: Trainer) -> Refit | None:
    """The trainer's `refit` attribute, if it has a callable one."""
    hook = getattr(trainer, "refit", None)
    return hook if callable(hook) else None


_ACTIVE: dict[str, Trainer] = {}  # space hash -> trainer passed to the Python API


@contextlib.contextmanager
def using(space_hash: str, trainer: Trainer) -> Iterator[None]:
    """Make `trainer` the custom objective of studies of this space (Python API)."""
    previous = _ACTIVE.get(space_hash)
    _ACTIVE[space_hash] = trainer
    try:
        yield
    finally:
        if previous is None:
            _ACTIVE.pop(space_hash, None)
        else:
            _ACTIVE[space_hash] = previous


def resolve(space_hash: str, spec: str | None, base: Path | None = None) -> Trainer:
    """The trainer passed to the API, else the space's `trainer: module:function` (which also
    reaches worker processes and `tuner run`)."""
    if space_hash in _ACTIVE:
        return _ACTIVE[space_hash]
    if spec is None and _ACTIVE:  # a space derived from the registered one (a compare grid)
        return list(_ACTIVE.values())[-1]
    if spec is None:
        raise TunerError("a `model: custom` space needs a trainer: pass objective=... to "
                         "tuner.run_study, or set `trainer: module:function` in the space")
    return load_trainer(spec, base)


def load_trainer(spec: str, base: Path | None = None) -> Trainer:
    """`pkg.module:function`, or `file.py:function` (from the working folder, else from
    `base`, the space file's folder)."""
    where, _, name = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.exists() and base is not None and (base / where).exists():
                path = base / where
            path = path.resolve()
            module_name = f"tuner_trainer_{path.stem}"
            module = sys.modules.get(module_name)
            if module is None:
                loaded = importlib.util.spec_from_file_location(module_name, path)
                if loaded is None or loaded.loader is None or not path.exists():
                    raise TunerError(f"trainer file not found: {where}")
                module = importlib.util.module_from_spec(loaded)
                sys.modules[module_name] = module
                loaded.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ImportError as exc:
        raise TunerError(f"cannot import trainer {spec!r}: {exc}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise TunerError(f"trainer {spec!r}: no function {name!r} in {where}")
    trainer: Callable[..., Any] = function
    return trainer


def final_metrics(returned: Any, reporter: Reporter) -> dict[str, float]:
    """The trial's metrics: what the trainer returned, merged over its best reported epoch."""
    metrics = dict(reporter.best_metrics)
    if isinstance(returned, Mapping):
        metrics.update({k: float(v) for k, v in returned.items()})
    elif returned is not None:
        metrics[reporter.key] = float(returned)
    if reporter.key not in metrics:
        raise TunerError(f"the trainer returned no value for the objective {reporter.key!r} "
                         "and reported no epoch")
    return metrics
