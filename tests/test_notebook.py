"""The analysis notebook runs top to bottom on a tiny comparison, the way a person runs it: with
papermill, the comparison given as a parameter (so it never rots)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat

from tests.conftest import REPO, TINY_SPACE, subprocess_env, write_space
from tuner import load_space
from tuner.execution import CompareOptions, run_comparison

NOTEBOOK = REPO / "notebooks" / "compare_strategies.ipynb"


def test_the_notebook_is_stored_without_outputs_and_takes_the_comparison_as_a_parameter() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "COMPARISON = " in code[0].source
    header = notebook.cells[0].source
    assert 'pip install -e ".[notebook]"' in header and "papermill " in header
    assert "-p COMPARISON" in header


def test_papermill_runs_the_notebook_on_a_tiny_comparison(workdir: Path, tracking_uri: str) -> None:
    text = TINY_SPACE.replace("pruner: none", "pruner: {name: median, startup_trials: 1}")
    space = load_space(write_space(workdir, text.replace("max_epochs: 3", "max_epochs: 2")))
    result = run_comparison(space, CompareOptions(
        strategies=("random", "tpe"), trials=3, repeats=2, name="nb", experiment="cmp-notebook",
        storage="nb.journal", tracking_uri=tracking_uri, out=str(workdir / "out"), threads=1,
        log_model=False, views=False))
    assert len(result.studies) == 4
    out = workdir / "analysed.ipynb"
    run = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOK), str(out), "-p", "COMPARISON", "nb",
         "-p", "EXPERIMENT", "cmp-notebook", "-p", "TRACKING_URI", tracking_uri, "--cwd",
         str(workdir)], env=subprocess_env(tracking_uri), capture_output=True, text=True,
        timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    notebook = nbformat.read(out, as_version=4)
    injected = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'COMPARISON = "nb"' in injected[0].source
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text_out = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "comparison nb (run " in text_out and "strategies random, tpe" in text_out
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # best so far, time to target, importances, learning curves
    tables = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "trials_to_target" in tables and "nb-tpe-r1" in tables
