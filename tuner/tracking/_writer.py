"""A background writer: calls run on one thread, in the order they were submitted.

It knows nothing of MLflow; the tracker uses it so that trial runs are written off the training's
critical path: `Writer` (a thread) or `ProcessWriter` (a process of its own).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

WRITER_URI_VARIABLE = "TUNER_WRITER_TRACKING_URI"  # the writer process's store ("": MLflow's)


class WriterLost(RuntimeError):
    """The writer process ended before it answered (killed, say): what it was sent is lost."""


class Writer:
    """One background thread that performs (MLflow) calls in the order they were submitted.

    A call on the SQLite store costs 10-15 ms; a trial of a small MLP can take 100 ms. Writing
    from a thread keeps those calls off the training's critical path. Calls that return a value
    drain the queue first, so the order of everything a run sees is preserved.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Any, tuple[Any, ...], dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._errors: list[BaseException] = []
        self.seconds = 0.0  # time spent in calls on the writer thread

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._work, name="tuner-mlflow", daemon=True)
            self._thread.start()
        self._queue.put((fn, args, kwargs))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                fn, args, kwargs = item
                start = time.perf_counter()
                try:
                    fn(*args, **kwargs)
                except Exception as exc:  # kept, and raised from drain() on the caller's thread
                    self._errors.append(exc)
                finally:
                    self.seconds += time.perf_counter() - start
            finally:
                self._queue.task_done()

    def close(self) -> None:
        """Run what is queued, then end the thread; raises the first error a call hit."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join()
        self._thread = None
        self.drain()

    def drain(self) -> None:
        """Wait until every submitted call has run; raise the first error any of them hit."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()
        if self._errors:
            error, self._errors = self._errors[0], []
            raise error


class RunRef:
    """A run id that the writer thread fills in when it creates the run."""

    def __init__(self) -> None:
        self.id: str | None = None


class ProcessWriter:
    """Trial runs written by a process of their own, so the MLflow store's Python work (10-20 ms
    a trial on SQLite) holds another interpreter's lock, not the training's; model logging goes
    there too, its imports made while the trials train.

    The process is `python -m tuner.tracking._serve` on two pipes (not a multiprocessing child:
    nothing of the caller's main module is imported again, so a plain script needs no
    `if __name__ == "__main__"`). Requests are plain tuples, done in order; a run is named by a
    number (`ref`) until the writer has created it. Calls that return something wait for
    everything before them; errors are collected there and raised by `drain`.

    It knows nothing of MLflow itself (the process does), so `tuner run` can start it before its
    own heavy imports (`_pool`): by the time the study ends it has made its imports."""

    def __init__(self, tracking_uri: str | None, experiment: str, warm_up: bool = True):
        """Start the process for the study logging to `experiment` on `tracking_uri` (None:
        MLFLOW_TRACKING_URI or MLflow's default, as the process resolves it); it imports what
        it needs and waits for `check` or `open`."""
        read_req, write_req = os.pipe()
        read_rep, write_rep = os.pipe()
        root = str(Path(__file__).resolve().parents[2])  # this tuner, not another one
        # The URI goes in the environment, which only this user can read: a command line
        # (and a password in it) is shown to every user of the machine.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p),
            **{WRITER_URI_VARIABLE: tracking_uri or ""})
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tuner.tracking._serve", str(read_req), str(write_rep),
             "warm" if warm_up else "cold"],
            pass_fds=(read_req, write_rep), env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        os.close(read_req)
        os.close(write_rep)
        self._out = Connection(write_req, readable=False)
        self._in = Connection(read_rep, writable=False)
        self._outbox: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._broken: str | None = None
        # Pickling and writing happen on a thread, so a slow writer never blocks training.
        self._feeder = threading.Thread(target=self._feed, name="tuner-mlflow-feeder",
                                        daemon=True)
        self._feeder.start()
        self._refs = 0
        self._lock = threading.Lock()
        self.seconds = 0.0  # time the writer process spent in MLflow calls
        self.loans = 0  # studies that borrowed it (a shared or kept writer: `_pool`)
        self.resolved_uri: str | None = None  # the store as the process resolved it (`open`)
        self.precheck(experiment)

    def precheck(self, experiment: str) -> None:
        """Have an existing store checked for `experiment` now, before the study asks (`check`
        then answers at once)."""
        self._outbox.put(("precheck", experiment))

    def _feed(self) -> None:
        while (item := self._outbox.get()) is not None:
            try:
                # The standard pickler: multiprocessing's would hand tensors over as shared
                # memory, which only a multiprocessing child may open.
                self._out.send_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError as exc:
                self._broken = f"{type(exc).__name__}: {exc}"

    def alive(self) -> bool:
        """Whether the process still runs and its pipe still takes requests."""
        return self._broken is None and self._process.poll() is None

    def create(self, run_name: str, tags: dict[str, str], start_ms: int) -> int:
        with self._lock:
            self._refs += 1
            ref = self._refs
        self._outbox.put(("create", ref, run_name, tags, start_ms))
        return ref

    def write(self, ref: int, metrics: list[tuple[str, float, int, int]],
              tags: list[tuple[str, str]], status: str | None,
              params: list[tuple[str, str]]) -> None:
        self._outbox.put(("write", ref, metrics, tags, status, params))

    def check(self, experiment: str | None, meanwhile: Callable[[], None] | None = None
              ) -> str | None:
        """Check the store before the study exists (see `_check.check_store`): what is wrong
        with it, in one line, or None. `meanwhile` runs here while the process checks."""
        found = self._ask(("check", experiment), meanwhile)
        return None if found is None else str(found)

    def open(self, experiment: str) -> tuple[str, str]:
        """Open the store and the study's experiment (created if need be): (the store's URI,
        the experiment's id)."""
        uri, experiment_id = self._ask(("open", experiment))
        self.resolved_uri = str(uri)
        return str(uri), str(experiment_id)

    def warm_up_now(self) -> None:
        """Have the process prepare model logging now (with `warm_up`), not once a study's
        store and parent run are open: for a final model, whose runs are written at its end."""
        self._outbox.put(("warm",))

    def open_soon(self, experiment: str) -> None:
        """Ask the process to open the store and the experiment (as `open` does) without
        waiting for it: `opened` says when it has."""
        self._outbox.put(("open", experiment))

    def opened(self) -> bool | None:
        """Whether the process has answered `open_soon`: True once it has the store open, None
        while it is still making its imports, False if it failed (then it is of no use).
        Never waits."""
        with self._lock:
            if self._broken or (not self._in.poll(0) and self._process.poll() is not None):
                return False
            if not self._in.poll(0):
                return None
            try:
                seconds, errors, _ = pickle.loads(self._in.recv_bytes())
            except (EOFError, OSError):
                return False
        self.seconds = seconds
        return not errors

    def abandon(self) -> None:
        """End the process without waiting for what it has to do (it was given nothing to
        write: a hand-over that the study's end came before)."""
        self._outbox.put(None)
        self._feeder.join(timeout=30)
        self._out.close()
        self._process.kill()
        _exited(self._process, timeout=30)
        self._in.close()

    def call(self, name: str, *args: Any) -> Any:
        """Run one of the writer's functions (model logging) after what is queued; its
        result."""
        return self._ask(("call", name, args))

    def store(self, name: str, *args: Any) -> Any:
        """Run a store function (`_client.<name>(client, *args)`) after what is queued; its
        result."""
        return self._ask(("store", name, args))

    def client_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a method of the writer's MLflow client after what is queued; its result."""
        return self._ask(("client", method, args, kwargs))

    def run_id(self, ref: int) -> str | None:
        found = self._ask(("id", ref))
        return None if found is None else str(found)

    def drain(self) -> None:
        self._ask(("drain",))

    def rest(self, idle_s: float) -> None:
        """Between studies: fold what was written into the store's file (as `close` does) and
        wait for the next study; the process ends by itself after `idle_s` seconds without
        one."""
        self._ask(("rest", idle_s))

    def close(self) -> None:
        try:
            if self._process.poll() is None and self._broken is None:
                self._ask(("close",))
        finally:
            self._outbox.put(None)
            self._feeder.join(timeout=30)
            self._out.close()
            if not _exited(self._process, timeout=30):
                self._process.kill()
            self._in.close()

    def _ask(self, request: tuple[Any, ...], meanwhile: Callable[[], None] | None = None
             ) -> Any:
        with self._lock:  # one question at a time, so each reply is the answer to it
            if self._in.closed:  # abandoned (`abandon`): there is no one to answer
                raise WriterLost("the MLflow writer process was ended")
            self._outbox.put(request)
            if meanwhile is not None:
                meanwhile()
            while not self._in.poll(1.0):
                if self._broken or self._process.poll() is not None:
                    raise WriterLost("the MLflow writer process ended unexpectedly (exit "
                                       f"code {self._process.poll()}; {self._broken or ''})")
            try:
                seconds, errors, result = pickle.loads(self._in.recv_bytes())
            except EOFError:
                raise WriterLost("the MLflow writer process ended unexpectedly (exit code "
                                   f"{self._process.wait()})") from None
        self.seconds = seconds
        if errors:
            raise RuntimeError(f"MLflow writer: {errors[0]}")
        return result


def _exited(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until `process` has exited (reaped), at most `timeout` seconds. Not `Popen.wait`
    with a timeout: it polls, sleeping ever longer, and overslept the writer's exit by ~10 ms
    at every study's end; a pidfd (Linux) wakes when it happens."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux, or already reaped
        pass
    else:
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout)
        finally:
            os.close(pidfd)
        if not ready:
            return False
        process.wait()  # it has exited: reaped at once
        return True
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def spare_core(threads: int) -> bool:
    """Whether a core is left beside a process's torch threads and the machine's other work:
    then a writer process takes MLflow's work off that process's interpreter lock; without one,
    it would take the training's CPU instead, and a thread writes."""
    return (os.cpu_count() or 1) - threads - others_running() >= 0.5


def others_running(samples: int = 10) -> float:
    """How many other processes' tasks are running on the machine now, as the fewest runnable
    tasks the kernel counts over `samples` milliseconds, less this process's own running
    threads (Linux's /proc/stat and /proc/self/task); elsewhere, the load average less one. Not
    the load average on Linux: it remembers the last minute, so right after a study (the one
    before in a script, say) it reports a busy core that is idle. Not less one: numpy's import
    starts a BLAS thread that spins for a while, and it is this process's work, not another's."""
    try:
        fewest = None
        for sample in range(samples):
            if sample:
                time.sleep(0.001)
            with open("/proc/stat", "rb") as stat:
                running = next(int(line.split()[1]) for line in stat
                               if line.startswith(b"procs_running"))
            others = running - _own_running()
            fewest = others if fewest is None else min(fewest, others)
        return max(0.0, float(fewest or 0))
    except (OSError, StopIteration, ValueError):
        pass
    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except OSError:  # no load average on this platform
        return 0.0


def _own_running() -> int:
    """How many of this process's threads are running now (at least the caller)."""
    count = 0
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that has just ended
            with open(f"/proc/self/task/{task}/stat", "rb") as stat:
                line = stat.read()
            count += line[line.rindex(b")") + 2:line.rindex(b")") + 3] == b"R"
    return max(1, count)
