"""A lighter default install: server drivers and tools are extras, and whatever needs a missing
one says which extra to install, in one line. A missing driver is simulated the way Python sees
an uninstalled package (None in sys.modules: `import` fails, `find_spec` finds nothing)."""

from __future__ import annotations

import socket
import sys
import tomllib

import pytest

from tests.conftest import REPO
from tuner import RunOptions
from tuner.cli import main
from tuner.errors import MissingExtra
from tuner.search import open_storage
from tuner.tracking import client_for, store_uri

DRIVERS = {"postgres": ("psycopg2", "psycopg"), "redis": ("redis",), "dask": ("distributed",),
           "dashboard": ("optuna_dashboard",)}


def uninstall(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    for module in DRIVERS[extra]:
        monkeypatch.setitem(sys.modules, module, None)


def test_the_default_install_has_no_server_drivers_and_every_extra_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    required = " ".join(project["dependencies"]).lower()
    for package in ("psycopg", "redis", "distributed", "dask", "optuna-dashboard", "jupyter",
                    "papermill"):
        assert package not in required, package
    extras = project["optional-dependencies"]
    assert {"postgres", "redis", "dask", "dashboard", "notebook", "all", "test"} <= set(extras)
    assert extras["all"] == ["tuner[postgres,redis,dask,dashboard,notebook]"]
    assert "tuner[all]" in extras["test"]  # the tests need every driver
    assert {"jupyterlab", "papermill"} <= {r.split(">")[0] for r in extras["notebook"]}


@pytest.mark.parametrize(("extra", "url"), [
    ("postgres", "postgresql://tuner:secret@127.0.0.1:1/optuna"),
    ("redis", "redis://:secret@127.0.0.1:1/0"),
])
def test_a_storage_url_without_its_driver_names_the_extra(
        monkeypatch: pytest.MonkeyPatch, extra: str, url: str) -> None:
    uninstall(monkeypatch, extra)
    with pytest.raises(MissingExtra) as missing:
        open_storage(url)
    message = str(missing.value)
    assert message.endswith(f"needs the {extra} extra: pip install 'tuner[{extra}]'")
    assert "secret" not in message and "\n" not in message


def test_a_postgresql_tracking_uri_without_its_driver_names_the_extra(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    uninstall(monkeypatch, "postgres")
    with pytest.raises(MissingExtra, match=r"tracking URI postgresql://tuner:\*\*\*@127\.0\.0\.1:1"
                                           r"/mlflow needs the postgres extra"):
        client_for("postgresql://tuner:secret@127.0.0.1:1/mlflow")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    assert main(["ui", "--port", port, "--tracking-uri", "postgresql://u@127.0.0.1:1/m"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("tuner: error: the tracking URI postgresql://u@127.0.0.1:1/m needs the "
                   "postgres extra: pip install 'tuner[postgres]'")


def test_a_bare_postgresql_tracking_uri_gets_the_installed_driver() -> None:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which `tuner[postgres]` is not."""
    uri = store_uri("postgresql://tuner@db/mlflow")
    driver = uri.split("://")[0].split("+")[1]
    assert uri == f"postgresql+{driver}://tuner@db/mlflow"
    __import__(driver)
    assert store_uri("postgresql+psycopg2://tuner@db/mlflow") == "postgresql+psycopg2://tuner@db/mlflow"
    assert store_uri("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_dask_and_the_dashboard_without_their_extras_say_so(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    uninstall(monkeypatch, "dask")
    with pytest.raises(MissingExtra, match=r"Dask cluster tcp://scheduler:8786 needs the dask "
                                           r"extra: pip install 'tuner\[dask\]'$"):
        RunOptions(dask="tcp://scheduler:8786")
    uninstall(monkeypatch, "dashboard")
    assert main(["dashboard"]) == 2
    assert capsys.readouterr().err.strip() == ("tuner: error: `tuner dashboard` needs the "
                                               "dashboard extra: pip install 'tuner[dashboard]'")
