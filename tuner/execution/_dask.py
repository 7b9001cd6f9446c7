"""`tuner run --dask ADDRESS`: the trials run as tasks on an existing Dask cluster.

Each task runs one trial: it joins the study through its storage (which every Dask worker must
reach: PostgreSQL, Redis, or a journal file on a shared file system) and logs to the same MLflow
parent run. Dask workers need tuner installed (`pip install tuner`, same version). The parent
keeps one task per free slot of the cluster in flight, shows the progress from the storage, and
reaps trials of dead workers; Ctrl-C sets a cluster-wide event that each task checks per epoch.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from optuna.trial import TrialState

from tuner.errors import TunerError, first_line, redact
from tuner.execution._loop import stop_on_signals, work
from tuner.execution._progress import StudyProgress
from tuner.execution._session import Session
from tuner.execution._workers import Job, StudyWatch, open_job
from tuner.search import asking_room, budget_slots

if TYPE_CHECKING:
    from tuner.execution._trial import TrialOutcome

_sessions: dict[Job, Any] = {}  # per Dask worker process: (storage, data, tracker) are reused
_lock = threading.Lock()


def run_task(job: Job, stop_event: str, slots_per_host: dict[str, int]) -> dict[str, Any]:
    """One Dask task: run one trial of the job's study (or none, if the budget is used up)."""
    from distributed import Event, get_worker

    host = urlsplit(get_worker().address).hostname or ""
    slots = slots_per_host.get(host) or max(slots_per_host.values(), default=1)
    threads = job.threads or max(1, (os.cpu_count() or 1) // slots)
    with _lock:  # one session per job and process; each task gets a fresh trial state
        base = _sessions.get(job)
        if base is None:
            base = _sessions[job] = open_job(job, threads)
    session = base.twin()
    stop = _ClusterStop(Event(stop_event))
    work(session, stop, max_trials=1)
    return {**session.report(), "interrupted": float(stop.is_set())}


class _ClusterStop(threading.Event):
    """The client's Ctrl-C as seen by a task: a cluster-wide event, asked at each epoch's end
    (from the task's own thread: a Dask event cannot be used from other threads)."""

    def __init__(self, event: Any):
        super().__init__()
        self._event = event

    def is_set(self) -> bool:
        if not super().is_set():
            with contextlib.suppress(Exception):  # the scheduler unreachable: train on
                if self._event.is_set():
                    self.set()
        return super().is_set()


def run_on_dask(session: Session, job: Job, address: str, max_slots: int,
                stop: threading.Event, progress: StudyProgress,
                on_trial: Callable[[TrialOutcome], None] | None) -> list[str]:
    from distributed import Client, Event

    try:
        client = Client(address, timeout="20s")
    except Exception as exc:
        raise TunerError(f"cannot reach the Dask scheduler {redact(address)}: "
                         f"{first_line(exc)}") from None
    try:
        per_host: dict[str, int] = {}  # torch threads: a host's cores shared by its task slots
        for worker, info in client.scheduler_info(n_workers=-1)["workers"].items():
            host = urlsplit(worker).hostname or str(info.get("host", "?"))
            per_host[host] = per_host.get(host, 0) + int(info.get("nthreads", 1))
        slots = sum(per_host.values())
        if max_slots > 1:
            slots = min(slots, max_slots)
        if slots < 1:
            raise TunerError(f"the Dask cluster at {redact(address)} has no workers")
        name = f"tuner-stop-{uuid.uuid4().hex}"
        event = Event(name, client=client)
        stats = _drive(client, session, job, name, per_host, slots, stop,
                       StudyWatch(session, progress, on_trial), event)
    finally:
        client.close()
    for item in stats:
        session.stats.add(item)
    return [f"Dask cluster {redact(address)}: {slots} trial(s) at a time on {len(per_host)} "
            "host(s)"]


def _drive(client: Any, session: Session, job: Job, event_name: str,
           slots_per_host: dict[str, int], slots: int, stop: threading.Event,
           watcher: StudyWatch, event: Any) -> list[dict[str, Any]]:
    handle = session.handle
    in_flight: set[Any] = set()
    stats: list[dict[str, Any]] = []
    errors: list[str] = []
    counter = 0
    told = False
    try:
        with stop_on_signals(stop, watcher.progress):
            while True:
                if stop.is_set() and not told:
                    event.set()  # running tasks stop at the end of their epoch
                    told = True
                watcher.poll()
                trials = handle.storage.get_all_trials(handle.study_id, deepcopy=False)
                waiting = sum(t.state == TrialState.WAITING for t in trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                free = 0 if session.grid else job.target - len(budget_slots(trials))
                room = asking_room(handle, trials)  # the sampler waits for trials running
                if room is not None:
                    free = min(free, room)
                reason = session.rules.check(session.study) if session.rules.active else None
                if reason is not None:  # a stopping rule holds: no new task
                    session.stats.stopped = reason
                    free = waiting = 0
                unstarted = max(0, len(in_flight) - running)
                while not stop.is_set() and len(in_flight) < slots and \
                        waiting + free - unstarted > 0:
                    counter += 1
                    in_flight.add(client.submit(
                        run_task, job, event_name, slots_per_host, pure=False,
                        key=f"tuner-trial-{job.study}-{event_name[-8:]}-{counter}"))
                    unstarted += 1
                if not in_flight and (stop.is_set() or (waiting == 0 and running == 0)):
                    return stats
                time.sleep(0.5)
                for future in [f for f in in_flight if f.done()]:
                    in_flight.discard(future)
                    try:
                        stats.append(future.result())
                    except Exception as exc:
                        errors.append(f"{type(exc).__name__}: {first_line(exc)}")
                        if len(errors) >= 3:
                            raise RuntimeError(f"Dask tasks keep failing; last: {errors[-1]}"
                                               ) from None
    except BaseException:
        with contextlib.suppress(Exception):
            event.set()
            deadline = time.monotonic() + 60
            while any(not f.done() for f in in_flight) and time.monotonic() < deadline:
                time.sleep(0.5)
        raise
