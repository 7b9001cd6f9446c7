"""Secrets and paths: passwords masked wherever tuner prints (`--debug` tracebacks and log records
included) and kept off `mlflow server`'s command line; data errors that name the file and column
but never quote the file; names that would leave their folder refused; a worker that says which
trainer it is about to import."""

from __future__ import annotations

import http.server
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.conftest import TINY_SPACE, subprocess_env, tuner_command, write_space
from tests.services import PASSWORD, pg_database, pg_url  # noqa: F401  (a fixture)
from tuner import DataError, parse_space
from tuner.data import load_dataset

QUIET = ["--quiet", "--no-model", "--threads", "1", "--trials", "1"]


def tuner(args: list[str], cwd: Path, uri: str, env: dict[str, str] | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*tuner_command(), *args], cwd=cwd,
                          env={**subprocess_env(uri), **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _HalfServer(http.server.BaseHTTPRequestHandler):
    """An MLflow server that answers its health check and experiment lookups, then hangs up on
    every write: the tracking check passes, MLflow fails afterwards."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/health"):
            self._answer(200, b"OK")
        elif "experiments/get-by-name" in self.path:
            self._answer(404, json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST",
                                          "message": "no such experiment"}).encode())
        else:
            self.close_connection = True  # no answer at all

    do_POST = do_GET

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def half_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HalfServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://bob:{PASSWORD}@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_debug_tracebacks_mask_the_password_and_no_empty_study_is_left(
        workdir: Path, tracking_uri: str, half_server: str) -> None:
    space = write_space(workdir)
    no_retries = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    for debug in (["--debug"], []):
        result = tuner([*debug, "run", str(space), "--tracking-uri", half_server, "--storage",
                        "s.journal", *QUIET], workdir, tracking_uri, env=no_retries)
        assert result.returncode == 1, result.stderr
        assert PASSWORD not in result.stderr + result.stdout
        assert "http://bob:***@127.0.0.1" in result.stderr
        assert ("Traceback" in result.stderr) == bool(debug)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(workdir / "s.journal")))
    assert storage.get_all_studies() == []  # created, then discarded when MLflow failed


def test_log_records_mask_passwords_in_messages_and_tracebacks(tmp_path: Path) -> None:
    script = ("import logging\nfrom tuner.errors import redact_logs\nredact_logs()\n"
              "log = logging.getLogger('mlflow.store')\n"
              f"log.warning('engine for %s failed', 'postgresql://u:{PASSWORD}@db/x')\n"
              "try:\n"
              f"    raise RuntimeError('cannot reach redis://:{PASSWORD}@cache:6379')\n"
              "except RuntimeError:\n"
              "    logging.getLogger('other').exception('lost')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert "postgresql://u:***@db/x" in done.stderr and "redis://:***@cache" in done.stderr
    assert PASSWORD not in done.stderr and "Traceback" in done.stderr


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_tuner_ui_keeps_the_store_password_off_the_command_line(
        workdir: Path, tracking_uri: str, pg_database: str) -> None:  # noqa: F811
    port = free_port()
    proc = subprocess.Popen([*tuner_command(), "ui", "--port", str(port), "--tracking-uri",
                             pg_url(pg_database)], cwd=workdir, env=subprocess_env(tracking_uri),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []],
                     daemon=True).start()
    try:
        said, deadline = "", time.monotonic() + 240
        while "MLflow UI:" not in said and time.monotonic() < deadline and proc.poll() is None:
            try:
                said += lines.get(timeout=1)
            except queue.Empty:
                continue
        assert "MLflow UI:" in said, proc.stderr.read() if proc.poll() is not None else said
        assert PASSWORD not in said
        servers = _descendants(proc.pid)
        assert servers  # mlflow server and the workers it started
        for pid in servers:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().decode(errors="replace")
            assert PASSWORD not in argv, argv
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_the_mlflow_writer_process_gets_its_store_outside_its_command_line(
        pg_database: str) -> None:  # noqa: F811
    """Every user of the machine may read a process's command line (`ps`); the writer process of
    `tuner run` (and of a study run from Python that hands its trial runs over) gets the store's
    URI, password included, in its environment, which only its user can read."""
    from tuner.tracking._writer import ProcessWriter

    url = pg_url(pg_database)
    assert PASSWORD in url
    writer = ProcessWriter(url, "secret", warm_up=False)
    try:
        with open(f"/proc/{writer._process.pid}/cmdline", "rb") as handle:
            argv = handle.read().decode(errors="replace")
        assert "tuner.tracking._serve" in argv and PASSWORD not in argv, argv
        assert writer.check("secret") is None  # and it found the store
    finally:
        writer.close()


SECRET_LINE = "db_password=hunter2-Zq8; api_key=AKIA-Secret"


@pytest.mark.parametrize(("content", "data", "words"), [
    (f"{SECRET_LINE}\nsecond line\nthird line\n",
     "{source: csv, path: notes.txt, target: label, task: classification}",
     ["notes.txt: no target column 'label'", "not shown"]),
    (f"user,{SECRET_LINE}\nroot,x\n",
     "{source: csv, path: notes.txt, target: label, task: classification}",
     ["notes.txt: no target column 'label'", "not shown"]),
    (f"a,label\n1,{SECRET_LINE}\n2,7\n3,8\n4,9\n",
     "{source: csv, path: notes.txt, target: label, task: regression}",
     ["notes.txt: column 'label'", "1 of its 4 values are not numbers"]),
    (f"label,{SECRET_LINE}\n1,2\n",
     "{source: csv, path: notes.txt, target: label, task: classification, features: [a]}",
     ["names column 'a'", "not shown"]),
])
def test_data_errors_name_the_file_and_column_never_its_contents(
        workdir: Path, content: str, data: str, words: list[str]) -> None:
    (workdir / "notes.txt").write_text(content)
    with pytest.raises(DataError) as caught:
        load_dataset(parse_space(f"data: {data}\nparams:\n  lr: 0.01\n").data)
    message = str(caught.value)
    assert "hunter2" not in message and "AKIA" not in message and "\n" not in message
    for word in words:
        assert word in message, message
    # a real table still lists its columns, which is what a typo in `target:` needs
    pd.DataFrame({"age": [1, 2], "label": ["a", "b"]}).to_csv(workdir / "t.csv", index=False)
    with pytest.raises(DataError, match="columns: age, label"):
        load_dataset(parse_space("data: {source: csv, path: t.csv, target: y, task: "
                                 "classification}\nparams:\n  lr: 0.01\n").data)


def test_names_that_would_leave_their_folder_are_refused(workdir: Path, tracking_uri: str) -> None:
    (workdir / "inner").mkdir()
    inner = workdir / "inner"
    # --study and the default study name derived from the space's name
    escaping = write_space(inner, TINY_SPACE.replace("name: tiny", "name: ../../escape"),
                           "escape.yaml")
    for args, words in ((["run", "escape.yaml", "--study", "../../x"], ["--study: '../../x'"]),
                        (["run", "escape.yaml"], ["--study: the default study name",
                                                  "'../../escape-random-seed0'"])):
        result = tuner([*args, *QUIET], inner, tracking_uri)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert all(w in result.stderr for w in words), result.stderr
    assert not (inner / "tuner.journal").exists() and escaping.exists()
    # a study stored under an odd name (made with Optuna directly): report and export refuse
    # the paths derived from it, and write where --out / --output say
    made = tuner(["run", str(write_space(inner)), "--storage", "s.journal", "--study", "ok",
                  "--no-tracking", *QUIET], inner, tracking_uri)
    assert made.returncode == 0, made.stderr
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(inner / "s.journal")))
    optuna.copy_study(from_study_name="ok", from_storage=storage, to_storage=storage,
                      to_study_name="../../outside")
    for args, flag in ((["report", "../../outside"], "--out"),
                       (["export", "../../outside"], "--output")):
        result = tuner([*args, "--storage", "s.journal"], inner, tracking_uri)
        assert result.returncode == 2, result.stderr
        assert f"tuner: error: {flag}: the study name '../../outside'" in result.stderr
    assert sorted(p.name for p in workdir.iterdir()) == ["inner"]  # nothing written outside
    assert not (workdir.parent / "outside.yaml").exists()
    result = tuner(["export", "../../outside", "--storage", "s.journal", "--output", "b.yaml"],
                   inner, tracking_uri)
    assert result.returncode == 0 and (inner / "b.yaml").exists(), result.stderr


TRAINER = """\
import sys


def train(params, reporter):
    print("TRAINING NOW", file=sys.stderr, flush=True)
    for epoch in range(1, 3):
        reporter.report(epoch, {"val_score": params["width"] / epoch})
    return None
"""


def test_a_worker_says_which_trainer_it_imports_before_it_runs(
        workdir: Path, tracking_uri: str) -> None:
    (workdir / "mine.py").write_text(TRAINER)
    space = write_space(workdir, "name: mine\nmodel: custom\ntrainer: mine.py:train\n"
                        "objective: {metric: score, direction: maximize}\n"
                        "study: {strategy: random, trials: 1, pruner: none}\n"
                        "params:\n  width: {type: int, low: 1, high: 9}\n", "mine.yaml")
    first = tuner(["run", str(space), "--storage", "s.journal", "--no-tracking", "--quiet"],
                  workdir, tracking_uri)
    assert first.returncode == 0, first.stderr
    worker = tuner(["worker", "--storage", "s.journal", "--study", "mine-random-seed0",
                    "--trials", "2", "--no-tracking", "--quiet"], workdir, tracking_uri)
    assert worker.returncode == 0, worker.stderr
    said = worker.stderr.index("its space's trainer mine.py:train is imported and called here")
    assert said < worker.stderr.index("TRAINING NOW")  # said before the trainer ran
