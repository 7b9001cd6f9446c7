"""`tuner ui` and `tuner dashboard` as a person uses them: a real MLflow server over a small study
and a small comparison, its REST API, and its pages in headless Chromium (tests/browser.py),
following the README's recipes; the HTML views opened from disk, offline.

One `tuner ui` serves the whole module (starting it costs 10-30 s). Set TUNER_SCREENSHOTS=DIR to
keep the screenshots; they are checked not to be blank.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Browser
from tests.conftest import TINY_SPACE, subprocess_env, tuner_command, write_space
from tuner import CompareOptions, RunOptions, load_space, run_study
from tuner.analysis import write_study_views
from tuner.cli import main
from tuner.cli._ui import Server
from tuner.search import find_study

PRUNED = TINY_SPACE.replace("pruner: none", "pruner: {name: median, startup_trials: 1}")
LINK = re.compile(r"^  experiment (?P<name>\S+): (?P<url>http://\S+)$")


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


class Lines:
    """A process's stdout, line by line, read by a thread (so waiting never blocks forever)."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.proc = proc
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self._queue.put(line.rstrip("\n"))
                                         for line in proc.stdout or []], daemon=True).start()

    def until(self, done: Any, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while not done(self.seen) and time.monotonic() < deadline and self.proc.poll() is None:
            try:
                self.seen.append(self._queue.get(timeout=1))
            except queue.Empty:
                continue
        while not self._queue.empty():
            self.seen.append(self._queue.get())
        return self.seen


@dataclass
class Site:
    folder: Path
    tracking_uri: str
    journal: str
    study: Any  # the StudyResult of the study
    comparison: Any
    url: str
    links: dict[str, str]
    proc: subprocess.Popen[str]
    lines: Lines
    shots: Path
    stopped: list[int] = field(default_factory=list)

    def experiment_id(self, name: str) -> str:
        return self.links[name].split("/#/experiments/")[1].split("?")[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    journal = str(folder / "ui.journal")
    space = load_space(write_space(folder, PRUNED))
    study = run_study(space, RunOptions(trials=3, storage=journal, tracking_uri=uri,
                                        experiment="ui-study", progress=False, threads=1))
    from tuner import compare

    comparison = compare(space, CompareOptions(
        strategies=("random", "tpe"), trials=2, repeats=2, name="ui-cmp", storage=journal,
        tracking_uri=uri, out=str(folder / "report"), log_model=False, views=False, threads=1))
    port = free_port()
    proc = subprocess.Popen([*tuner_command(), "ui", "--port", str(port), "--tracking-uri", uri],
                            cwd=folder, env=subprocess_env(uri), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines = Lines(proc)
    said = lines.until(lambda seen: sum(bool(LINK.match(s)) for s in seen) >= 2, 240)
    shots = Path(os.environ.get("TUNER_SCREENSHOTS") or folder / "screenshots")
    links = {m["name"]: m["url"] for m in map(LINK.match, said) if m}
    made = Site(folder, uri, journal, study, comparison, f"http://127.0.0.1:{port}", links, proc,
                lines, shots)
    try:
        assert len(links) == 2, (said, proc.stderr.read() if proc.poll() is not None and
                                 proc.stderr else "")
        yield made
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Browser]:
    opened = Browser()
    try:
        yield opened
    finally:
        opened.close()


def screenshot(browser: Browser, site: Site, name: str) -> Path:
    """A screenshot that shows something: not a blank or single-colour page."""
    from PIL import Image

    path = browser.screenshot(site.shots / f"{name}.png")
    with Image.open(path) as image:
        colours = image.convert("RGB").resize((140, 100)).getcolors(maxcolors=100_000) or []
    assert len(colours) > 50, f"{path} looks blank ({len(colours)} colours)"
    return path


def test_ui_prints_the_link_to_each_experiments_runs_and_serves_them(site: Site) -> None:
    assert f"MLflow UI: {site.url}" in "\n".join(site.lines.seen)
    ids = {}
    for name in ("ui-study", "ui-cmp"):
        query = urllib.parse.urlencode({"experiment_name": name})
        with urllib.request.urlopen(f"{site.url}/api/2.0/mlflow/experiments/get-by-name?"
                                    f"{query}", timeout=30) as answer:
            ids[name] = json.loads(answer.read())["experiment"]["experiment_id"]
        assert site.links[name] == (f"{site.url}/#/experiments/{ids[name]}"
                                    "?workflowType=machine_learning")
    assert ids["ui-study"] == site.study.mlflow_experiment_id
    found = rest(site.url, "runs/search", {"experiment_ids": [ids["ui-study"]],
                                           "filter": "tags.`tuner.role` = 'study'"})
    (parent,) = found["runs"]
    assert parent["info"]["run_id"] == site.study.mlflow_parent_run_id
    trials = rest(site.url, "runs/search", {
        "experiment_ids": [ids["ui-study"]], "order_by": ["metrics.objective DESC"],
        "filter": f"tags.mlflow.parentRunId = '{site.study.mlflow_parent_run_id}'"})["runs"]
    objective = [next(m["value"] for m in r["data"]["metrics"] if m["key"] == "objective")
                 for r in trials]
    assert len(trials) == 3 and objective == sorted(objective, reverse=True)


def test_the_printed_link_opens_the_runs_table_not_the_genai_overview(
        site: Site, browser: Browser) -> None:
    experiment = site.experiment_id("ui-study")
    # Without the query, MLflow 3.17 opens the experiment in its GenAI mode: traces, no runs.
    bare = browser.open(f"{site.url}/#/experiments/{experiment}", "Traces")
    time.sleep(3)
    bare = browser.text()
    assert "matching runs" not in bare and site.study.study not in bare
    screenshot(browser, site, "0-experiment-without-workflowType")
    text = browser.open(site.links["ui-study"], site.study.study)
    assert "Run Name" in text and "matching runs" in text and "Model training" in text
    screenshot(browser, site, "1-runs-table")


def test_the_trials_of_a_study_list_by_objective_as_the_readme_says(
        site: Site, browser: Browser) -> None:
    study = find_study(site.journal, site.study.study)
    ranked = [f"{site.study.study}-trial-{t.number}"
              for t in sorted(study.trials, key=lambda t: -(t.value or 0.0))]
    browser.open(site.links["ui-study"], site.study.study)
    browser.evaluate("document.querySelector('input[placeholder*=\"metrics.\"]').focus()")
    browser.type(f"tags.study = '{site.study.study}' and tags.`tuner.role` = 'trial'")
    browser.key("Enter", 13)
    browser.wait_for("matching runs")
    browser.open_menu("Sort: Created", "objective")
    browser.click("objective")  # the first one: under the metrics
    text = browser.wait_for(ranked[0])
    text = browser.wait_for("3 matching runs")
    shown = [name for name in re.findall(rf"{re.escape(site.study.study)}-trial-\d+", text)]
    assert shown == ranked, text[:1500]  # listed on their own, best first
    assert "Sort: objective" in text
    screenshot(browser, site, "2-trials-by-objective")


def test_a_trial_shows_its_curves_and_the_parent_its_logged_model(
        site: Site, browser: Browser) -> None:
    experiment = site.experiment_id("ui-study")
    trial = rest(site.url, "runs/search", {
        "experiment_ids": [experiment], "max_results": 1,
        "filter": f"tags.study = '{site.study.study}' and tags.trial_number = '0'"})["runs"][0]
    run = trial["info"]["run_id"]
    browser.open(f"{site.url}/#/experiments/{experiment}/runs/{run}/model-metrics"
                 "?workflowType=machine_learning", "Step")  # the charts' x axis: the epoch
    text = browser.wait_for("train_loss")
    assert "val_accuracy" in text and "Model metrics" in text
    browser.wait_until("document.querySelectorAll('.js-plotly-plot, svg.main-svg').length > 2")
    screenshot(browser, site, "3-trial-curves")
    parent = site.study.mlflow_parent_run_id
    text = browser.open(f"{site.url}/#/experiments/{experiment}/runs/{parent}"
                        "?workflowType=machine_learning", "Logged models")
    text = browser.wait_for("Logged models (1)")  # the count comes after the page's first paint
    assert "model_uri" in text
    browser.scroll_to("Logged models")
    screenshot(browser, site, "4-parent-logged-model")
    # ... and the experiment's "Models" tab lists it, with the run that logged it.
    text = browser.open(f"{site.url}/#/experiments/{experiment}/models"
                        "?workflowType=machine_learning", site.study.study)
    assert "Source run" in text and "Ready" in text  # model `model`, logged from the parent run
    screenshot(browser, site, "4b-experiment-models")


def test_the_comparison_groups_by_strategy_as_the_readme_says(
        site: Site, browser: Browser) -> None:
    browser.open(site.links["ui-cmp"], "ui-cmp")
    browser.evaluate("document.querySelector('input[placeholder*=\"metrics.\"]').focus()")
    browser.type("tags.comparison = 'ui-cmp' and tags.`tuner.role` = 'study'")
    browser.key("Enter", 13)
    browser.wait_for("matching runs")
    browser.open_menu("Sort: Created", "best_value")
    browser.click("best_value")  # sorted by a metric, the studies are not folded
    browser.key("Escape", 27)
    browser.wait_for("ui-cmp-tpe-r1")
    browser.open_menu("Group by", "Tags")
    browser.click("strategy")  # the first one: under Tags
    browser.key("Escape", 27)
    text = browser.wait_for("Group: random")
    assert "Group: tpe" in text and "Group by: strategy" in text
    screenshot(browser, site, "5-comparison-grouped")
    browser.evaluate("document.querySelector('input[value=CHART]').click()")
    text = browser.wait_for("random (best_so_far)")
    assert "tpe (best_so_far)" in text and "best_value" in text
    screenshot(browser, site, "6-comparison-charts")


def test_views_and_curves_render_offline(site: Site, browser: Browser) -> None:
    views = write_study_views(find_study(site.journal, site.study.study), site.folder / "views")
    page = next(p for p in views if p.name == "views.html")
    curves = site.folder / "report" / "curves.html"
    for path, figures, name in ((page, 6, "7-views-html"), (curves, 2, "8-curves-html")):
        html = path.read_text()
        assert not re.search(r"<script[^>]+src=", html)  # nothing to fetch: plotly.js is inside
        browser.open(path.as_uri())
        count = browser.wait_until(
            f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {figures} && "
            "document.querySelectorAll('.js-plotly-plot .main-svg').length")
        assert count >= figures
        screenshot(browser, site, name)


def test_the_dashboard_serves_the_studies_live(site: Site, browser: Browser) -> None:
    port = free_port()
    proc = subprocess.Popen([*tuner_command(), "dashboard", "--storage", site.journal, "--port",
                             str(port)], cwd=site.folder, env=subprocess_env(site.tracking_uri),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = Lines(proc)
    try:
        said = lines.until(lambda seen: any("optuna-dashboard:" in s for s in seen), 120)
        assert f"optuna-dashboard: http://127.0.0.1:{port}/dashboard/" in "\n".join(said), \
            proc.stderr.read() if proc.poll() is not None and proc.stderr else said
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=30) as answer:
            studies = {s["study_name"] for s in json.loads(answer.read())["study_summaries"]}
        assert {site.study.study, "ui-cmp-tpe-r1"} <= studies
        text = browser.open(f"http://127.0.0.1:{port}/dashboard/", site.study.study)
        assert "ui-cmp-random-r0" in text
        screenshot(browser, site, "9-dashboard")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0


def test_ui_stops_with_its_server_whose_warnings_stay_out_of_its_log(site: Site) -> None:
    port = int(site.url.rsplit(":", 1)[1])
    site.proc.send_signal(signal.SIGTERM)
    assert site.proc.wait(timeout=60) == 0
    with pytest.raises(ConnectionRefusedError):  # the server and its workers went with it
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # The log `tuner ui` keeps (and shows if the server dies) holds no deprecation warnings of
    # MLflow's dependencies (`mlflow ui` prints a StarletteDeprecationWarning).
    server = Server(site.tracking_uri, port)
    try:
        server.start()
        server.wait_ready(180)
        time.sleep(2)
    finally:
        server.stop()
    log = "\n".join(server.log)
    assert "Uvicorn running" in log or "Listening" in log or "startup complete" in log, log
    assert "Warning" not in log, log


def test_ui_refuses_a_missing_store_a_server_uri_a_busy_port_and_an_unknown_experiment(
        workdir: Path, site: Site, capsys: pytest.CaptureFixture[str]) -> None:
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
    assert main(["ui", "--tracking-uri", site.tracking_uri, "--port", str(free_port()),
                 "--experiment", "no-such-experiment"]) == 2
    err = capsys.readouterr().err
    assert "--experiment: no experiment 'no-such-experiment'" in err
    assert "experiments: ui-study, ui-cmp" in err
