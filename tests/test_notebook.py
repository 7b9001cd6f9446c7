"""The analysis notebook runs top to bottom on a tiny comparison (so it never rots)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO, TINY_SPACE, write_space
from tuner import load_space
from tuner.execution import CompareOptions, run_comparison

NOTEBOOK = REPO / "notebooks" / "compare_strategies.ipynb"


def test_the_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])


def test_the_notebook_runs_on_a_tiny_comparison(
        workdir: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = TINY_SPACE.replace("pruner: none", "pruner: {name: median, startup_trials: 1}")
    space = load_space(write_space(workdir, text.replace("max_epochs: 3", "max_epochs: 2")))
    result = run_comparison(space, CompareOptions(
        strategies=("random", "tpe"), trials=3, repeats=2, name="nb", experiment="cmp-notebook",
        storage="nb.journal", tracking_uri=tracking_uri, out=str(workdir / "out"), threads=1,
        log_model=False, views=False))
    assert len(result.studies) == 4
    monkeypatch.setenv("TUNER_EXPERIMENT", "cmp-notebook")
    monkeypatch.setenv("TUNER_COMPARISON", "nb")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.delenv("TUNER_STORAGE", raising=False)  # the one the comparison recorded
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(workdir)}}).execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text_out = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "comparison nb (run " in text_out and "strategies random, tpe" in text_out
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # best so far, time to target, importances, learning curves
    tables = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "trials_to_target" in tables and "nb-tpe-r1" in tables
