"""`tuner ui`: MLflow's UI on 127.0.0.1, over the tracking store that `tuner run` writes to.

MLflow 3 opens an experiment in its GenAI mode (traces); the query `?workflowType=machine_learning`
opens "Model training" on the runs table, so every link tuner prints carries it (`ui_link`).
The server runs as `python -m mlflow server` in its own process group, so stopping `tuner ui`
(Ctrl-C, SIGTERM) stops the server and every worker it started, and a server that dies on its
own is reported with the end of its log. One worker and no job runner: the UI is for one person
reading runs, and that halves the start-up time.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tuner._stores import driver_url
from tuner.errors import TunerError, redact

HOST = "127.0.0.1"
DEFAULT_PORT = 5000
# The server's own Python warnings (deprecations inside MLflow's dependencies) are not the user's.
_SERVER_WARNINGS = "ignore::DeprecationWarning,ignore::FutureWarning,ignore::UserWarning"


def ui_link(base: str, experiment_id: str) -> str:
    """The page of an experiment's runs (the runs table, "Model training" mode)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def where_to_browse(tracking_uri: str, experiment_id: str) -> str:
    """Where a finished run or comparison can be seen: the tracking server's page, or the page
    that `tuner ui` (started in this folder) will serve."""
    if tracking_uri.lower().startswith(("http://", "https://")):
        return ui_link(tracking_uri, experiment_id)
    return f"{ui_link(f'http://{HOST}:{DEFAULT_PORT}', experiment_id)} (after `tuner ui`)"


def backend_store(uri: str) -> str:
    """The store the server reads; refuses a URI that is a server already or a missing file."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
    if scheme in ("http", "https", "databricks"):
        raise TunerError(f"the tracking URI {redact(uri)} is a server already: open it in a browser")
    if scheme == "sqlite":
        path = uri.split("://", 1)[1][1:]  # sqlite:///rel/path or sqlite:////abs/path
        if path and path != ":memory:" and not Path(path).is_file():
            raise TunerError(f"no MLflow store at {path}: run `tuner run` or `tuner compare` "
                             "first, or pass --tracking-uri")
    elif scheme in ("file", "") and not Path(uri.removeprefix("file://")).is_dir():
        raise TunerError(f"no MLflow store at {uri}: pass --tracking-uri")
    return uri


def check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise TunerError(f"--port must be between 1 and 65535, got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server will: connections of a server stopped a moment ago do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            raise TunerError(f"port {port} on {HOST} is in use: choose another --port") from None


def server_command(port: int) -> list[str]:
    """The server's command line; the store's URI is not on it (see `server_env`)."""
    return [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port),
            "--workers", "1"]


def server_env(uri: str) -> dict[str, str]:
    """The server's environment, which carries the store's URI: a command line is visible to
    every user of the machine (`ps`), and the URI may hold a database password."""
    return {**os.environ, "MLFLOW_BACKEND_STORE_URI": driver_url(uri),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONWARNINGS": _SERVER_WARNINGS}


class Server:
    """`mlflow server` in its own process group; its output is kept for error messages."""

    def __init__(self, uri: str, port: int):
        self.uri = uri
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log: collections.deque[str] = collections.deque(maxlen=30)
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(server_command(self.port), env=server_env(self.uri),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line.rstrip())

    def wait_ready(self, timeout_s: float) -> None:
        """Until /health answers; raises if the server exits or takes longer than `timeout_s`."""
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited with code {self.process.returncode}: "
                                   f"{self.tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError), \
                    urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer within {timeout_s:.0f} s: {self.tail()}")

    def tail(self) -> str:
        lines = [line for line in self.log if line.strip()]
        return redact(" | ".join(lines[-5:])) or "no output"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers may outlive the main process by a moment; the group goes with them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def serve(uri: str, port: int, wait_s: float, say: Callable[[str], None],
          experiments: list[tuple[str, str]]) -> int:
    """Start the UI, say where it is and the link to each of `experiments` ((id, name) pairs),
    and keep it up until Ctrl-C or SIGTERM."""
    store = backend_store(uri)
    check_port(port)
    server = Server(store, port)
    say(f"starting the MLflow UI on {server.url} over {redact(store)} (10-30 s) ...")
    with sigterm_as_interrupt():
        try:
            server.start()
            server.wait_ready(wait_s)
            say(f"MLflow UI: {server.url}  (tracking store {redact(store)}; Ctrl-C stops it)")
            for experiment_id, name in experiments:
                say(f"  experiment {name}: {ui_link(server.url, experiment_id)}")
            if not experiments:
                say("  no experiment yet: `tuner run` or `tuner compare` creates one")
            assert server.process is not None
            code = server.process.wait()
            raise RuntimeError(f"mlflow server stopped on its own (exit code {code}): "
                               f"{server.tail()}")
        except KeyboardInterrupt:
            say("stopping the MLflow UI")
            return 0
        finally:
            server.stop()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
