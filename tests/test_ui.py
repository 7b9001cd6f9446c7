"""`tuner ui`: a real MLflow server over the test store, queried through its REST API."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env, tuner_command, write_space
from tuner import RunOptions, load_space, run_study
from tuner.cli import main


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rest(base: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return dict(json.loads(answer.read()))


def test_ui_serves_the_runs_of_the_store_and_stops_with_its_server(
        workdir: Path, tracking_uri: str) -> None:
    space = load_space(write_space(workdir))
    result = run_study(space, RunOptions(trials=2, storage=str(workdir / "s.journal"),
                                         tracking_uri=tracking_uri, experiment="ui-runs",
                                         log_model=False, progress=False, threads=1, views=False))
    port = free_port()
    proc = subprocess.Popen([*tuner_command(), "ui", "--port", str(port), "--tracking-uri",
                             tracking_uri], cwd=workdir, env=subprocess_env(tracking_uri),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []],
                     daemon=True).start()
    try:
        deadline = time.monotonic() + 180
        said = ""
        while "MLflow UI:" not in said and time.monotonic() < deadline and proc.poll() is None:
            try:
                said = lines.get(timeout=1)
            except queue.Empty:
                continue
        assert f"MLflow UI: http://127.0.0.1:{port}" in said, proc.stderr.read() if proc.stderr else ""
        base = f"http://127.0.0.1:{port}"
        query = urllib.parse.urlencode({"experiment_name": "ui-runs"})
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}",
                                    timeout=30) as answer:
            experiment_id = json.loads(answer.read())["experiment"]["experiment_id"]
        assert experiment_id == result.mlflow_experiment_id
        found = rest(base, "runs/search", {"experiment_ids": [experiment_id],
                                           "filter": "tags.`tuner.role` = 'study'"})
        (parent,) = found["runs"]
        assert parent["info"]["run_id"] == result.mlflow_parent_run_id
        tags = {t["key"]: t["value"] for t in parent["data"]["tags"]}
        assert tags["strategy"] == "random" and tags["study"] == result.study
        trials = rest(base, "runs/search", {
            "experiment_ids": [experiment_id], "order_by": ["metrics.objective DESC"],
            "filter": f"tags.mlflow.parentRunId = '{result.mlflow_parent_run_id}'"})["runs"]
        objective = [next(m["value"] for m in r["data"]["metrics"] if m["key"] == "objective")
                     for r in trials]
        assert len(trials) == 2 and objective == sorted(objective, reverse=True)
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/artifacts/list?run_id="
                                    f"{result.mlflow_parent_run_id}", timeout=30) as answer:
            artifacts = {f["path"] for f in json.loads(answer.read())["files"]}
        assert {"space.yaml", "trials.csv"} <= artifacts  # the UI can show the run's files
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0
    with pytest.raises(ConnectionRefusedError):  # the server and its workers went with it
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_ui_refuses_a_missing_store_a_server_uri_and_a_busy_port(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = workdir / "missing.db"
    assert main(["ui", "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["ui", "--tracking-uri", "http://127.0.0.1:1"]) == 2
    assert "is a server already" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
