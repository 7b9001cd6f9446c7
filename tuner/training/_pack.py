"""Training several trials at once: a `Pack` trains its trials as one stacked model (`Stack`),
epoch by epoch, and each trial's result means what it would mean trained alone by `fit`.

- Each trial keeps its seed: its initial weights are built exactly as `fit` builds them, its rows
  come in the order of its own generator, and its dropout masks come from the generator state
  `fit` would draw them from (on the CPU; a GPU draws them from a per-trial CUDA generator).
- Its learning rate, momentum, weight decay, dropout rate and schedule are its own; its optimizer
  step is its optimizer's own update on its slot.
- Batch sizes that are multiples of the pack's micro-batch share a pack: a trial with batch
  `m * micro` adds up the gradients of `m` micro-batches and steps once, which is its batch's
  gradient (batch norm needs the whole batch: such trials share one batch size).
- Per-trial bookkeeping is `fit`'s: per-epoch metrics to its callbacks (which may raise to stop
  it: pruning, interruption), early stopping, the best epoch's weights, a non-finite loss that
  fails it alone. A finished trial leaves the pack at the end of the epoch; new trials join there.
- A trial may bring its own training rows (a cross-validation fold's; same columns, any count)
  and its own epoch budget: the folds of a re-evaluation train as one pack. A trial with fewer
  rows than the longest sees its last batch end early: the rows past its end are masked out of
  its loss, and it takes no step after its last batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tuner.data import Dataset, Split
from tuner.space import EarlyStopping, Loss, TrialConfig
from tuner.training._backward import forward_backward, written_out
from tuner.training._device import on_device
from tuner.training._fit import (
    _PERMUTE_LIMIT_BYTES,
    Callback,
    FitResult,
    NonFiniteLoss,
    RowLoss,
    Watch,
    batch_plan,
    criterion,
    score,
)
from tuner.training._stack import SlotState, Stack, order_slots


@dataclass
class PackedTrial:
    """A trial handed to a pack: `name` is the caller's handle for it (a trial number)."""

    name: Any
    config: TrialConfig
    seed: int
    callbacks: Sequence[Callback] = ()
    train: Split | None = None  # its own training rows (a fold's), else the pack's
    epochs: int | None = None  # its own epoch budget (at most the pack's), else the pack's


@dataclass
class Finished:
    """A trial that left its pack: its result (None if it raised) or the exception it raised
    (`NonFiniteLoss`, or whatever a callback raised)."""

    trial: PackedTrial
    result: FitResult | None
    error: Exception | None = None
    history: list[dict[str, float]] = field(default_factory=list)


class _Member:
    def __init__(self, trial: PackedTrial, data: Dataset, device: torch.device, watch: Watch,
                 max_epochs: int):
        config = trial.config
        self.trial = trial
        self.config = config
        own = trial.train
        self.rows = data.train if own is None else Split(own.x.to(device), own.y.to(device))
        self.max_epochs = min(trial.epochs or max_epochs, max_epochs)
        # As `fit`: the data order's generator, then the weights from the seeded global one,
        # whose state is then where `fit`'s dropout draws its masks.
        self.order_gen = torch.Generator().manual_seed(trial.seed)
        self.state: SlotState | None = SlotState.initial(config, data.n_features,
                                                         data.n_outputs, trial.seed)
        if device.type == "cpu":
            self.noise_gen = torch.Generator()
            self.noise_gen.set_state(torch.get_rng_state())
        else:
            self.noise_gen = torch.Generator(device=device).manual_seed(trial.seed)
        self.batch, self.stop = batch_plan(config, len(self.rows))
        self.lr = config.lr
        self.steps = 0  # optimizer steps taken (the per-batch schedule counts them)
        self.epoch = 0
        self.watch = watch
        self.history: list[dict[str, float]] = []
        self.best_state: SlotState | None = None
        self.noise: list[torch.Tensor] = []  # this batch's dropout noise (micro-batched trials)

    def next_epoch_lr(self, max_epochs: int) -> None:
        """The per-epoch schedules, computed as torch's schedulers compute them."""
        c = self.config
        if c.lr_schedule == "exponential":
            self.lr = self.lr * (1.0 - c.lr_decay)
        elif c.lr_schedule == "cosine":
            e, t_max = self.epoch, max_epochs
            if (e - 1 - t_max) % (2 * t_max) == 0:
                self.lr = self.lr + c.lr * (1 - math.cos(math.pi / t_max)) / 2
            else:
                self.lr = (1 + math.cos(math.pi * e / t_max)) / (
                    1 + math.cos(math.pi * (e - 1) / t_max)) * self.lr

    def after_step(self) -> None:
        self.steps += 1
        if self.config.lr_schedule == "inverse_time":  # LambdaLR, stepped per batch
            self.lr = self.config.lr * (1.0 / (1.0 + self.config.lr_decay * self.steps))


class Pack:
    """Trials of one `pack_key` trained together; `add` them, then `run_epoch` until empty."""

    def __init__(self, data: Dataset, *, max_epochs: int, early_stopping: EarlyStopping | None,
                 monitor: str | None = None, monitor_direction: str = "maximize",
                 loss: Loss | None = None, micro: int | None = None,
                 device: torch.device | str | None = None):
        self.device = torch.device(device or "cpu")
        self.data = on_device(data, self.device)
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.monitor, self.direction = monitor, monitor_direction
        self.micro = micro
        self.row_loss = RowLoss(self.data, loss)
        self.loss_fn = criterion(self.data, loss).to(self.device)
        self.weights = None if self.data.class_weights is None or self.data.task != \
            "classification" else torch.tensor(self.data.class_weights, device=self.device)
        self.members: list[_Member] = []
        self.joining: list[_Member] = []
        self.stack: Stack | None = None
        # The training rows of members that bring their own, as one table: (the parts, x, y).
        self._table: tuple[tuple[Split, ...], torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.members) + len(self.joining)

    def add(self, trial: PackedTrial) -> None:
        """Join at the start of the next epoch."""
        watch = Watch.of(self.data, self.early_stopping, self.monitor, self.direction)
        self.joining.append(_Member(trial, self.data, self.device, watch, self.max_epochs))

    def _rebuild(self) -> None:
        states = [self.stack.take(k) for k in range(self.stack.k)] if self.stack else []
        for member, state in zip(self.members, states, strict=True):
            member.state = state
        members = self.members + self.joining
        self.joining = []
        order = order_slots([m.config for m in members])
        self.members = [members[i] for i in order]
        states = [m.state for m in self.members if m.state is not None]
        assert len(states) == len(self.members)
        self.stack = Stack([m.config for m in self.members], states, self.data.n_features,
                           self.data.n_outputs, self.device)
        for member in self.members:
            member.state = None

    def run_epoch(self) -> list[Finished]:
        """One epoch of every trial in the pack; the trials that left it (done, stopped early,
        failed, or stopped by a callback)."""
        if self.joining or self.stack is None or self.stack.k != len(self.members):
            self._rebuild()
        if not self.members:
            return []
        assert self.stack is not None
        train_losses = self._train_epoch(self.stack)
        val = self._validate(self.stack)
        finished: list[Finished] = []
        leaving: set[int] = set()
        for k, member in enumerate(self.members):
            member.epoch += 1
            member.next_epoch_lr(member.max_epochs)
            done = self._end_epoch(k, member, train_losses[k], val[k] if val else {})
            if done is not None:
                finished.append(done)
                leaving.add(k)
        if leaving:
            # Who stays carries its tensors into the next stack.
            for k, member in enumerate(self.members):
                if k not in leaving:
                    member.state = self.stack.take(k)
            self.members = [m for k, m in enumerate(self.members) if k not in leaving]
            self.joining = self.members + self.joining
            self.members = []
            self.stack = None
        return finished

    def _end_epoch(self, k: int, member: _Member, train_loss: float,
                   val: dict[str, float]) -> Finished | None:
        """`fit`'s end of an epoch for one trial; a Finished if it leaves the pack."""
        assert self.stack is not None
        epoch = member.epoch
        if not math.isfinite(train_loss):
            return Finished(member.trial, None, NonFiniteLoss(epoch, train_loss), member.history)
        metrics = {"train_loss": train_loss, **val}
        member.history.append(metrics)
        if member.watch.improved(epoch, metrics) and member.watch.keeps_best:
            member.best_state = self.stack.take(k)
        try:
            for callback in member.trial.callbacks:
                callback.on_epoch_end(epoch, metrics)
        except Exception as exc:  # pruned, interrupted, ...: the caller decides
            return Finished(member.trial, None, exc, member.history)
        stopped = member.watch.should_stop
        if not stopped and epoch < member.max_epochs:
            return None
        state = member.best_state or self.stack.take(k)
        model = state.load_into(member.config, self.data.n_features, self.data.n_outputs,
                                self.device)
        best = member.watch.best_epoch if member.best_state is not None else epoch
        result = FitResult(model, member.history, best_epoch=best, epochs_run=epoch,
                           stopped_early=stopped)
        return Finished(member.trial, result, None, member.history)

    def _train_epoch(self, stack: Stack) -> list[float]:
        members = self.members
        x, y, offsets = self._rows()
        stops = [m.stop for m in members]
        stop = max(stops)
        ragged = min(stops) != stop
        if ragged and any(m.config.batch_norm for m in members):
            raise ValueError("batch norm trials of one pack need as many training rows each")
        # The largest micro-batch that divides every member's batch: a pack left with trials of
        # one batch size (often one trial) steps by whole batches, as alone.
        micro = math.gcd(*(m.batch if m.batch < m.stop else m.stop for m in members))
        if self.micro is not None and micro % self.micro:
            micro = self.micro
        ticks = -(-stop // micro)
        last_tick = [-(-s // micro) - 1 for s in stops]  # each member's last batch ends there
        # A batch of `m` micro-batches (the last batch may be shorter); the tail ends it.
        per_batch = [max(1, -(-min(m.batch, m.stop) // micro)) for m in members]
        orders = torch.stack([self._order(m, offset, stop) for m, offset in zip(
            members, offsets, strict=True)]).to(self.device)
        permute = len(members) * stop * x[:1].numel() * x.element_size() <= _PERMUTE_LIMIT_BYTES
        xs, ys = (x[orders], y[orders]) if permute else (x, y)
        dropout = [k for k, m in enumerate(members) if m.config.dropout > 0]
        masks = [m.expand(-1, micro, -1).clone() for m in stack.unit_masks] \
            if dropout or stack.mask_units else []
        uniform = all(m == 1 for m in per_batch) and not ragged
        by_hand = written_out(stack)
        # Per tick pattern (rows, each trial's denominator, rows past its end): the rows past
        # each trial's end, what its batch loss is divided by (its rows, or their class
        # weights) and the step's d(batch loss)/d(row loss). Made once: a pack of several
        # batch sizes repeats a few patterns, and each tensor made is a fixed cost per tick.
        patterns: dict[tuple[Any, ...], tuple[torch.Tensor | None, torch.Tensor,
                                              torch.Tensor | None]] = {}
        sizes = [[0.0] * len(members) for _ in range(ticks)]  # a tensor once the epoch ends
        denominators = [1.0] * len(members)
        contributions = []
        # The written-out step needs no graph: one `no_grad` for the epoch, not one per call.
        with torch.no_grad() if by_hand else contextlib.nullcontext():
            for t in range(ticks):
                start, end = t * micro, min(t * micro + micro, stop)
                rows = end - start
                valid = [max(0, min(end, s) - start) for s in stops]
                if permute:
                    xb, yb = xs[:, start:end], ys[:, start:end]
                else:
                    idx = orders[:, start:end]
                    xb, yb = x[idx], y[idx]
                for k, m in enumerate(members):
                    if t % per_batch[k] == 0 and t <= last_tick[k]:  # a batch starts
                        first = t * micro
                        last = min(first + per_batch[k] * micro, stops[k])
                        for tick in range(t, min(t + per_batch[k], ticks)):
                            sizes[tick][k] = float(last - first)
                        if not uniform or self.weights is not None:
                            denominators[k] = self._denominator(y, orders[k, first:last],
                                                                last - first)
                        if k in dropout and per_batch[k] > 1:
                            m.noise = self._noise(m, last - first)
                for k in dropout:
                    if valid[k]:
                        self._mask(members[k], k, masks, valid[k],
                                   t * micro % (per_batch[k] * micro), per_batch[k] > 1)
                divisors = [float(rows)] * len(members) if uniform and self.weights is None \
                    else denominators
                pattern = (rows, *divisors, *(valid if ragged else ()))
                if pattern not in patterns:
                    past = torch.arange(rows, device=self.device) >= torch.tensor(
                        valid, device=self.device)[:, None] if ragged else None
                    divisor = torch.tensor(divisors, device=self.device)
                    patterns[pattern] = (past, divisor, _row_scale(divisor, rows, past)
                                         if by_hand else None)
                past, denominator, scale = patterns[pattern]
                batch_masks = [mask[:, :rows] for mask in masks]
                if by_hand:
                    assert scale is not None
                    per_row = forward_backward(stack, xb, batch_masks, self.row_loss, yb, scale)
                else:
                    per_row = self.row_loss(stack.forward(xb, batch_masks), yb)
                if past is not None:
                    per_row = per_row.masked_fill(past, 0.0)
                contribution = per_row.sum(dim=1) / denominator
                if not by_hand:
                    contribution.sum().backward()
                contributions.append(contribution.detach())
                stepping = [k for k in range(len(members)) if t <= last_tick[k] and (
                    (t + 1) % per_batch[k] == 0 or t == last_tick[k])]
                for k in stepping:
                    stack.step(k, members[k].lr, first=members[k].steps == 0)
                    members[k].after_step()
                stack.zero_grad(None if len(stepping) == len(members) else stepping)
        losses = (torch.stack(contributions) * torch.tensor(sizes, device=self.device)
                  ).sum(dim=0) / torch.tensor(
            stops, dtype=torch.float32, device=self.device)
        return [float(v) for v in losses.tolist()]

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """The members' training rows as one table (x, y) and where each member's start (made
        again only when the members change)."""
        blocks: dict[int, int] = {}  # id of a member's rows -> where they start
        parts: list[Split] = []
        for m in self.members:
            if id(m.rows) not in blocks:
                blocks[id(m.rows)] = sum(len(p) for p in parts)
                parts.append(m.rows)
        offsets = [blocks[id(m.rows)] for m in self.members]
        if len(parts) == 1:
            return parts[0].x, parts[0].y, offsets
        held = self._table
        if held is None or len(held[0]) != len(parts) or any(
                a is not b for a, b in zip(held[0], parts, strict=False)):
            held = (tuple(parts), torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
            self._table = held
        return held[1], held[2], offsets

    @staticmethod
    def _order(member: _Member, offset: int, length: int) -> torch.Tensor:
        """The member's rows in this epoch's order (its own generator's permutation, as alone),
        padded to `length` with its first row (masked out of its loss)."""
        order = torch.randperm(len(member.rows), generator=member.order_gen) + offset
        if len(order) < length:
            order = torch.cat([order, torch.full((length - len(order),), offset)])
        return order[:length] if len(order) > length else order

    def _denominator(self, y: torch.Tensor, rows: torch.Tensor, count: int) -> float:
        """What a batch's loss is divided by: its rows, or its rows' class weights."""
        if self.weights is None:
            return float(count)
        return float(self.weights[y[rows]].sum())

    def _noise(self, member: _Member, rows: int) -> list[torch.Tensor]:
        """A whole batch's dropout noise per layer, drawn as `fit`'s dropout draws it."""
        p = member.config.dropout
        return [torch.empty((rows, units), device=self.device).bernoulli_(
            1 - p, generator=member.noise_gen).div_(1 - p) for units in member.config.units]

    def _mask(self, member: _Member, k: int, masks: list[torch.Tensor], rows: int,
              offset: int, batched: bool) -> None:
        p = member.config.dropout
        for layer, units in enumerate(member.config.units):
            target = masks[layer][k, :rows, :units]
            if batched:
                target.copy_(member.noise[layer][offset:offset + rows])
            else:
                target.bernoulli_(1 - p, generator=member.noise_gen).div_(1 - p)

    def _validate(self, stack: Stack) -> list[dict[str, float]]:
        val = self.data.val
        if not len(val):
            return []
        outs = stack.predict(val.x)
        return [score(self.data, val, outs[k], "val_", self.loss_fn) for k in range(stack.k)]


def fit_packed(trials: Sequence[PackedTrial], data: Dataset, **options: Any
               ) -> list[Finished]:
    """Train `trials` in one pack to the end (their order kept); `options` as `Pack`'s."""
    pack = Pack(data, **options)
    for trial in trials:
        pack.add(trial)
    done: dict[int, Finished] = {}
    while len(pack):
        for item in pack.run_epoch():
            done[id(item.trial)] = item
    return [done[id(t)] for t in trials]


def _row_scale(denominator: torch.Tensor, rows: int, past: torch.Tensor | None) -> torch.Tensor:
    """d(batch loss)/d(row loss) per trial and row, as autograd's backward computes it: one over
    the trial's denominator, 0 for rows past the trial's end."""
    scale = (1.0 / denominator)[:, None].expand(-1, rows)
    return scale if past is None else scale.masked_fill(past, 0.0)
