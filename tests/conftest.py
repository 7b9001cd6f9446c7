"""Shared fixtures: tiny spaces, a real MLflow SQLite store per session, isolated work folders."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TINY_SPACE = """\
name: tiny
data: {source: digits, val_fraction: 0.2, test_fraction: 0.2, seed: 0}
objective: {metric: accuracy}
training:
  max_epochs: 3
  early_stopping: {patience: 2}
study: {strategy: random, trials: 3, pruner: none, grid_points: 2}
params:
  n_layers: {type: int, low: 1, high: 2}
  units: {type: int, low: 16, high: 32, per_layer: n_layers, grid: [16]}
  optimizer: {type: categorical, choices: [adam, sgd]}
  lr: {type: float, low: 1e-3, high: 1e-2, log: true}
  momentum: {type: float, low: 0.5, high: 0.9, when: {optimizer: sgd}, grid: [0.9]}
  batch_size: 128
"""


def custom_space(name: str, trials: int) -> str:
    """A custom trainer's space: one float `x` in [0, 1], objective `score`, up to 3 epochs,
    `trials` random trials, no pruner."""
    return (f"name: {name}\nmodel: custom\nobjective: {{metric: score, direction: maximize}}\n"
            f"training: {{max_epochs: 3}}\nstudy: {{strategy: random, trials: {trials}, seed: 0, "
            "pruner: none}\nparams:\n  x: {type: float, low: 0.0, high: 1.0}\n")


def write_space(folder: Path, text: str = TINY_SPACE, name: str = "tiny.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (and other tests share the machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def no_writer_kept() -> Iterator[None]:
    """A writer process kept for a next study (as a notebook keeps one) ends with its test, as
    it would with the test's interpreter: it must not serve the next test's store."""
    yield
    pool = sys.modules.get("tuner.tracking._pool")
    if pool is not None:
        pool.close_kept()


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real MLflow SQLite store for the session (creating its schema costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def space_file(workdir: Path) -> Path:
    return write_space(workdir)


def tuner_command() -> list[str]:
    return [sys.executable, "-m", "tuner"]


def subprocess_env(tracking_uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = tracking_uri
    env["PYTHONUNBUFFERED"] = "1"
    return env
