"""The MLflow writer process (`serve`; the parent's side is `_writer.ProcessWriter`): checks the
store, creates and writes trial runs, does every other store call of the study, logs models.

It owns the study's only MLflow client (the study's process imports no MLflow). Once the store
is open it imports what model logging needs (MLflow's PyTorch flavour, torch.export: seconds)
while the trials train, so the study's end does not wait for them.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from tuner import _collector as collector
from tuner.errors import redact_logs
from tuner.tracking import _client
from tuner.tracking._check import check_store, holds_a_store
from tuner.tracking._client import client_for, create_run, experiment_named, store_uri, write_run
from tuner.tracking._errors import StoreError
from tuner.tracking._model_io import log_raw_row_model_at, log_torch_model_at
from tuner.tracking._preflight import prepare_client

_CALLS: dict[str, Any] = {"torch_model": log_torch_model_at, "raw_row_model": log_raw_row_model_at}
# What the study's process may ask of the store (`Tracker.store`).
_STORE = {name: getattr(_client, name) for name in (
    "open_parent_run", "create_plain_run", "log_values", "end_run", "run_data", "log_files",
    "end_orphaned_runs", "experiment_of_run", "trial_run")}
_ANSWERED = {"check", "open", "call", "store", "client"}  # requests that wait for a reply


def serve(tracking_uri: str | None, requests: Connection, replies: Connection,
          warm_up: bool = True) -> None:
    """The writer's loop: requests in order until `close` or the parent's end (EOF). The store
    is checked (`check`) and opened (`open`: the experiment's name) before runs are written;
    kept between studies (`rest`), it is checked and opened again for the next one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    redact_logs()  # it prints on the user's terminal too: MLflow's warnings quote store URLs
    tracking_uri = tracking_uri or None
    client: Any = None
    experiment_id = ""
    ids: dict[int, str] = {}
    errors: list[str] = []
    busy = 0.0
    prechecked: tuple[str | None, str | None] | None = None  # (experiment, what is wrong)
    warming = threading.Thread(target=_warm_up, name="tuner-warm-up", daemon=True)
    # MLflow's SQL store imported while the study's process makes its own imports: the study
    # waits for the store's check, which then takes a tenth of a second. The store itself is
    # not opened before the study asks (bad input must leave no store behind).
    prepare_client(tracking_uri)
    if not warm_up:
        collector.resume()
    resting: float | None = None  # between studies (`rest`): how long to wait for the next
    while True:
        if resting is not None and not requests.poll(resting):
            os._exit(0)  # kept unused too long: the store is settled, nothing is left to write
        resting = None
        try:
            request = pickle.loads(requests.recv_bytes())
        except EOFError:  # the parent is gone: what it sent is written
            return
        op = request[0]
        if op == "rest":
            _client.settle(client, tracking_uri)
            resting = request[1]
            _reply(replies, (busy, errors[:], None))
            errors.clear()
            continue
        if op == "close":
            _client.settle(client, tracking_uri)
            _reply(replies, (busy, errors, None))
            replies.close()
            os._exit(0)  # everything is committed; MLflow's exit hooks have nothing to do
        if op == "drain":
            _reply(replies, (busy, errors[:], None))
            errors.clear()
            continue
        if op == "warm":  # a final model's writer: nothing to write before the model
            if warm_up and warming.ident is None:
                warming.start()
            continue
        if op == "id":
            _reply(replies, (busy, [], ids.get(request[1])))
            continue
        if op == "precheck":
            # Sent as the process starts: an existing store is checked while the study's
            # process makes its imports (MLflow's schema check alone loads ~70 migration
            # scripts: 50 ms the study would wait for). A new store is made only when asked.
            with contextlib.suppress(Exception):  # the check proper will say it
                if holds_a_store(tracking_uri):
                    started = time.perf_counter()
                    prechecked = (request[1], _problem(tracking_uri, request[1]))
                    busy += time.perf_counter() - started
            continue
        started = time.perf_counter()
        result: Any = None
        try:
            if op == "check":
                if prechecked is not None and prechecked[0] == request[1]:
                    result, prechecked = prechecked[1], None
                else:
                    result = _problem(tracking_uri, request[1])
            elif op == "open":
                client = client_for(tracking_uri)
                experiment_id = experiment_named(client, request[1])
                tracking_uri = store_uri(tracking_uri)
                result = (tracking_uri, experiment_id)
            elif op == "create":
                _, ref, name, tags, start_ms = request
                ids[ref] = create_run(client, experiment_id, name, tags, start_ms)
            elif op == "write":
                _, ref, metrics, tags, status, params = request
                if ref in ids:  # else its creation failed, and said so
                    write_run(client, ids[ref], metrics, tags, status, params)
            elif op == "store":
                _, name, args = request
                if client is None:  # a question before the study's experiment is known
                    client = client_for(tracking_uri)
                result = _STORE[name](client, *args)
            elif op == "client":
                _, method, args, kwargs = request
                result = getattr(client, method)(*args, **kwargs)
            elif op == "call":
                _, name, args = request
                if warming.is_alive():
                    warming.join()  # torch.export is not to be used from two threads at once
                result = _CALLS[name](tracking_uri, *args)
        except Exception as exc:  # kept, and raised in the parent by its next question
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            busy += time.perf_counter() - started
        if op in _ANSWERED:
            _reply(replies, (busy, errors[:], result))
            errors.clear()
        if warm_up and warming.ident is None and client is not None and op != "open":
            # A model will be logged: import what that needs while the trials train. Not
            # before the study has its store and parent run: it waits for those, and the
            # warm-up's imports would take this process's interpreter lock from them.
            warming.start()


def _problem(tracking_uri: str | None, experiment: str | None) -> str | None:
    """What is wrong with the store (one line), or None."""
    try:
        check_store(tracking_uri, experiment)
    except StoreError as exc:
        return str(exc)
    return None


def _reply(replies: Connection, item: tuple[Any, ...]) -> None:
    replies.send_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))


def _warm_up() -> None:
    """Save a tiny model the way the study's model will be logged, into a folder that is then
    deleted: the first save loads torch._dynamo and torch.export's caches (seconds)."""
    try:
        import tempfile

        import numpy as np
        import torch

        from tuner.tracking._model_io import save_torch_model

        model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2),
                                    torch.nn.Softmax(dim=1))
        with tempfile.TemporaryDirectory(prefix="tuner-warm-up-") as folder:
            save_torch_model(f"{folder}/model", model, np.zeros((2, 2), dtype=np.float32))
    except Exception:
        pass
    finally:
        collector.resume()
