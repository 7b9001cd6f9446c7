"""The MLflow writer process (`serve`; the parent's side is `_writer.ProcessWriter`): creates and
writes trial runs and logs models.

It owns one MLflow client on the study's store. When it has nothing to do it imports what model
logging needs (MLflow's PyTorch flavour, torch.export: seconds), so the study's end does not
wait for them.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from tuner import _collector as collector
from tuner.tracking._client import client_for, create_run, write_run
from tuner.tracking._model_io import log_raw_row_model_at, log_torch_model_at

_CALLS: dict[str, Any] = {"torch_model": log_torch_model_at, "raw_row_model": log_raw_row_model_at}


def serve(tracking_uri: str, requests: Connection, replies: Connection,
          warm_up: bool = True) -> None:
    """The writer's loop: requests in order until `close` or the parent's end (EOF). The store
    is opened by the first request, `open` (the experiment's id)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    client: Any = None
    experiment_id = ""
    ids: dict[int, str] = {}
    errors: list[str] = []
    busy = 0.0
    warming = threading.Thread(target=_warm_up, name="tuner-warm-up", daemon=True)
    if warm_up:  # a model will be logged: import what that needs while the trials train
        warming.start()
    else:
        collector.resume()
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
            if op == "open":
                client, experiment_id = client_for(tracking_uri), str(request[1])
            elif op == "create":
                _, ref, name, tags, start_ms = request
                ids[ref] = create_run(client, experiment_id, name, tags, start_ms)
            elif op == "write":
                _, ref, metrics, tags, status, params = request
                if ref in ids:  # else its creation failed, and said so
                    write_run(client, ids[ref], metrics, tags, status, params)
            elif op == "call":
                _, name, args = request
                if warming.is_alive():
                    warming.join()  # torch.export is not to be used from two threads at once
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
    """Save a tiny model the way the study's model will be logged, into a folder that is then
    deleted: the first save loads torch._dynamo and torch.export's caches, and MLflow maps
    every installed package to its modules to check the requirements (seconds each)."""
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
