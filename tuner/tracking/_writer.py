"""A background writer: calls run on one thread, in the order they were submitted.

It knows nothing of MLflow; the tracker uses it so that trial runs are written off the training's
critical path.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any


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

