"""Packed trials: the built-in MLP's trials trained several at a time as one stacked model.

The executor pulls trials from the same `TrialSource` as the one-at-a-time loop, samples their
parameters as soon as they are claimed (so it knows what they need), and groups them by what
must match inside a pack (`pack_key`: depth, batch norm, batch size or micro-batch). A pack
trains while it has trials; when one leaves (done, stopped early, pruned, failed), its slot is
refilled at the end of the epoch with a waiting trial of the same key, or a newly asked one. A
trial whose key differs waits (its heartbeat beats) for the next pack of its kind; at most a
pack's capacity of trials wait, and a sampler that learns from finished trials has at most its
batch limit of them asked and not told (`tuner.search.batch_limit`); no sampler is asked while
the trials running would complete what it waits for (`asking_room`: TPE's and GP's random
start, NSGA-II's generation).

Each finished trial goes through `close_trial` and `Session.finish`, so the study and MLflow
record it exactly as when trials run one at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from optuna.exceptions import UpdateFinishedTrialError

from tuner.execution._progress import StudyProgress, show
from tuner.execution._session import OpenTrial, Session
from tuner.execution._source import TrialSource
from tuner.execution._trial import Prepared, TrialOutcome, close_trial, open_trial, prepare_trial
from tuner.search import batch_limit
from tuner.space import Space, TrialConfig
from tuner.training import (
    Finished,
    ModelTooLarge,
    Pack,
    PackedTrial,
    check_fits,
    micro_batch,
    pack_key,
    pack_size,
)


def packs_trials(session: Session) -> bool:
    """Whether the session trains its trials in packs: the built-in MLP without
    cross-validation, unless `--pack 1` asked for one at a time."""
    return session.pack != 1 and session.space.model == "mlp" and not session.data.folds


def batch_sizes(space: Space) -> list[int]:
    """Every batch size the space can ask for (the default if it names none; [] if it
    cannot list them)."""
    param = next((p for p in space.params if p.name == "batch_size"), None)
    if param is None:
        return [TrialConfig().batch_size]
    values = param.possible_values()
    return sorted(int(str(v)) for v in values) if values else []


def work_packed(session: Session, stop: threading.Event, source: TrialSource, *,
                progress: StudyProgress | None = None,
                on_trial: Callable[[TrialOutcome], None] | None = None) -> int:
    """Run the session's trials in packs until the source has no more; the number run."""
    return _Runner(session, stop, source, progress, on_trial).run()


@dataclass
class _Waiting:
    """A claimed trial, its parameters sampled, waiting for (or in) a pack."""

    prepared: Prepared
    opened: OpenTrial
    config: TrialConfig
    key: tuple[Any, ...]


class _Runner:
    def __init__(self, session: Session, stop: threading.Event, source: TrialSource,
                 progress: StudyProgress | None,
                 on_trial: Callable[[TrialOutcome], None] | None):
        self.session, self.stop, self.source = session, stop, source
        self.progress, self.on_trial = progress, on_trial
        self.space = session.space
        self.rows = len(session.data.train)
        self.micro = micro_batch(batch_sizes(self.space))
        self.device = torch.device(session.device)
        self.batch = None if session.pack else batch_limit(session.study.sampler, session.target)
        self.waiting: list[_Waiting] = []
        self.exhausted = False
        self.ran = 0

    def run(self) -> int:
        while (key := self._next_key()) is not None:
            self._run_pack(key)
        return self.ran

    def _next_key(self) -> tuple[Any, ...] | None:
        """The key of the next pack: the one most trials wait for, else a new trial's."""
        if self.stop.is_set() or self.session.stats.stopped:
            # Ctrl-C, or a stopping rule (no trial starts after it): what waits is queued again.
            self._interrupt_waiting()
            return None
        if not self.waiting:
            item = self._ask()
            if item is None:
                return None
            self.waiting.append(item)
        counts: dict[tuple[Any, ...], int] = {}
        for item in self.waiting:
            counts[item.key] = counts.get(item.key, 0) + 1
        return max(counts, key=lambda k: counts[k])  # ties: the earliest waiting

    def _run_pack(self, key: tuple[Any, ...]) -> None:
        space, session = self.space, self.session
        first = next(w for w in self.waiting if w.key == key)
        micro = key[3] if key[2] == "micro" else None
        capacity = session.pack or pack_size(first.config, session.data.n_features,
                                             session.data.n_outputs, micro or first.config.batch_size,
                                             self.device)
        pack = Pack(session.data, max_epochs=space.training.max_epochs,
                    early_stopping=space.training.early_stopping, monitor=space.objective.key,
                    monitor_direction=space.objective.direction, loss=space.training.loss,
                    micro=micro, device=self.device)
        self._fill(pack, key, capacity)
        while len(pack):
            started = time.perf_counter()
            finished = pack.run_epoch()
            session.stats.training_s += time.perf_counter() - started
            for item in finished:
                self._conclude(item)
            self._fill(pack, key, capacity)

    def _fill(self, pack: Pack, key: tuple[Any, ...], capacity: int) -> None:
        """Free slots take waiting trials of the key, then newly asked ones; a new trial of
        another key waits, as long as fewer than `capacity` wait and this process has fewer
        than the sampler's batch limit open (`--pack K` sets its own)."""
        while len(pack) < capacity and not self.stop.is_set():
            item = next((w for w in self.waiting if w.key == key), None)
            if item is not None:
                self.waiting.remove(item)
            else:
                if self.exhausted or len(self.waiting) >= capacity or (
                        self.batch is not None and self.session.open_trials >= self.batch):
                    return
                item = self._ask()
                if item is None:
                    return
                if item.key != key:
                    self.waiting.append(item)
                    continue
            self._start(pack, item)

    def _ask(self) -> _Waiting | None:
        """A newly claimed trial. While this process has trials open it does not wait for
        trials running elsewhere (they may be what the others wait for): it asks again later."""
        if self.exhausted:
            return None
        wait = self.session.open_trials == 0
        trial = self.source.next(wait=wait)
        if trial is None:
            if wait or self.session.stats.stopped or self.stop.is_set():
                self.exhausted = True
            return None
        opened = self.session.begin(trial)
        prepared = prepare_trial(trial, self.space, self.session.seed)
        config = TrialConfig.from_params(prepared.params)
        return _Waiting(prepared, opened, config, pack_key(config, self.rows, self.micro))

    def _start(self, pack: Pack, item: _Waiting) -> None:
        session = self.session
        prepared = item.prepared
        prepared.started = time.perf_counter()  # its time is its time in a pack
        try:
            check_fits(item.config, session.data.n_features, session.data.n_outputs,
                       item.config.batch_size, self.device)
        except ModelTooLarge as exc:  # it fails alone, before it takes a slot
            open_trial(prepared, self.space, self.stop, False,
                       lambda params: session.start_run(item.opened, params))
            self._record(item, close_trial(prepared, self.space, session.data, None, exc))
            return
        callbacks = open_trial(prepared, self.space, self.stop, session.prune,
                               lambda params: session.start_run(item.opened, params))
        pack.add(PackedTrial(item, item.config, prepared.seed, callbacks))

    def _conclude(self, finished: Finished) -> None:
        item: _Waiting = finished.trial.name
        try:
            outcome = close_trial(item.prepared, self.space, self.session.data, finished.result,
                                  finished.error)
        except UpdateFinishedTrialError:  # reaped as lost while it trained (a long stall)
            outcome = TrialOutcome(item.prepared.trial.number, "LOST", {}, 0,
                                   seconds=time.perf_counter() - item.prepared.started)
        self._record(item, outcome)

    def _interrupt_waiting(self) -> None:
        """Trials that never started are queued again, like interrupted ones."""
        for item in self.waiting:
            outcome = item.prepared.outcome
            outcome.state, outcome.reason = "INTERRUPTED", "interrupted before it started"
            self._record(item, outcome)
        self.waiting = []

    def _record(self, item: _Waiting, outcome: TrialOutcome) -> None:
        self.session.finish(item.opened, outcome)
        self.ran += 1
        if self.on_trial is not None:
            self.on_trial(outcome)
        if self.progress is not None:
            show(self.session, self.progress)
