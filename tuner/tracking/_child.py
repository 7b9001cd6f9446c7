"""The MLflow writer process: `ProcessWriter` (the parent's side) and `serve` (the process), which
creates and writes trial runs and logs models.

It owns one MLflow client on the study's store. When it has nothing to do it imports what model
logging needs (MLflow's PyTorch flavour, torch.export: seconds), so the study's end does not
wait for them.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tuner.tracking._client import client_for, create_run, write_run
from tuner.tracking._model_io import log_raw_row_model_at, log_torch_model_at

_CALLS: dict[str, Any] = {"torch_model": log_torch_model_at, "raw_row_model": log_raw_row_model_at}


class ProcessWriter:
    """Trial runs written by a process of their own, so the MLflow store's Python work (~50 ms
    a trial on SQLite) holds another interpreter's lock, not the training's; model logging goes
    there too, its imports made while the trials train.

    The process is `python -m tuner.tracking._serve` on two pipes (not a multiprocessing child:
    nothing of the caller's main module is imported again, so a plain script needs no
    `if __name__ == "__main__"`). Requests are plain tuples, done in order; a run is named by a
    number (`ref`) until the writer has created it. Calls that return something wait for
    everything before them; errors are collected there and raised by `drain`."""

    def __init__(self, tracking_uri: str, experiment_id: str, warm_up: bool = True):
        import tuner

        read_req, write_req = os.pipe()
        read_rep, write_rep = os.pipe()
        root = str(Path(tuner.__file__).resolve().parents[1])  # this tuner, not another one
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tuner.tracking._serve", str(read_req), str(write_rep),
             tracking_uri, experiment_id, "warm" if warm_up else "cold"],
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

    def _feed(self) -> None:
        while (item := self._outbox.get()) is not None:
            try:
                # The standard pickler: multiprocessing's would hand tensors over as shared
                # memory, which only a multiprocessing child may open.
                self._out.send_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
            except OSError as exc:
                self._broken = f"{type(exc).__name__}: {exc}"

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

    def call(self, name: str, *args: Any) -> Any:
        """Run one of the writer's functions (model logging) after what is queued; its
        result."""
        return self._ask(("call", name, args))

    def run_id(self, ref: int) -> str | None:
        found = self._ask(("id", ref))
        return None if found is None else str(found)

    def drain(self) -> None:
        self._ask(("drain",))

    def close(self) -> None:
        try:
            if self._process.poll() is None and self._broken is None:
                self._ask(("close",))
        finally:
            self._outbox.put(None)
            self._feeder.join(timeout=30)
            self._out.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._in.close()

    def _ask(self, request: tuple[Any, ...]) -> Any:
        with self._lock:  # one question at a time, so each reply is the answer to it
            self._outbox.put(request)
            while not self._in.poll(1.0):
                if self._broken or self._process.poll() is not None:
                    raise RuntimeError("the MLflow writer process ended unexpectedly (exit "
                                       f"code {self._process.poll()}; {self._broken or ''})")
            try:
                seconds, errors, result = pickle.loads(self._in.recv_bytes())
            except EOFError:
                raise RuntimeError("the MLflow writer process ended unexpectedly (exit code "
                                   f"{self._process.wait()})") from None
        self.seconds = seconds
        if errors:
            raise RuntimeError(f"MLflow writer: {errors[0]}")
        return result


def serve(tracking_uri: str, experiment_id: str, requests: Connection, replies: Connection,
          warm_up: bool = True) -> None:
    """The writer's loop: requests in order until `close` or the parent's end (EOF)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    client = client_for(tracking_uri)
    ids: dict[int, str] = {}
    errors: list[str] = []
    busy = 0.0
    if warm_up:  # a model will be logged: import what that needs while the trials train
        threading.Thread(target=_warm_up, name="tuner-warm-up", daemon=True).start()
    while True:
        try:
            request = pickle.loads(requests.recv_bytes())
        except EOFError:  # the parent is gone: what it sent is written
            return
        op = request[0]
        if op == "close":
            _reply(replies, (busy, errors, None))
            replies.close()
            os._exit(0)  # everything is committed; MLflow's exit hooks have nothing to do
        if op == "drain":
            _reply(replies, (busy, errors[:], None))
            errors.clear()
            continue
        if op == "id":
            _reply(replies, (busy, [], ids.get(request[1])))
            continue
        started = time.perf_counter()
        try:
            if op == "create":
                _, ref, name, tags, start_ms = request
                ids[ref] = create_run(client, experiment_id, name, tags, start_ms)
            elif op == "write":
                _, ref, metrics, tags, status, params = request
                if ref in ids:  # else its creation failed, and said so
                    write_run(client, ids[ref], metrics, tags, status, params)
            elif op == "call":
                _, name, args = request
                result = _CALLS[name](tracking_uri, *args)
                _reply(replies, (busy, errors[:], result))
                errors.clear()
        except Exception as exc:  # kept, and raised in the parent by its next question
            errors.append(f"{type(exc).__name__}: {exc}")
            if op == "call":
                _reply(replies, (busy, errors[:], None))
                errors.clear()
        finally:
            busy += time.perf_counter() - started


def _reply(replies: Connection, item: tuple[Any, ...]) -> None:
    replies.send_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))


def _warm_up() -> None:
    try:
        import mlflow.pytorch  # noqa: F401
        import torch.export  # noqa: F401
        from mlflow.models import infer_signature  # noqa: F401
    except Exception:
        pass

