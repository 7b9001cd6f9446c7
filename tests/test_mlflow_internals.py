"""Pins the MLflow behaviour that tuner relies on beyond MLflow's public API (used through
tuner/tracking/_requirements.py): an MLflow upgrade that changes it fails here, loudly."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import mlflow.pytorch
import mlflow.utils.environment as environment
import mlflow.utils.requirements_utils as requirements_utils
import numpy as np
import pytest
import torch

from tuner.tracking._requirements import requirements_as_given


def _tiny() -> tuple[torch.nn.Module, np.ndarray]:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    return model, np.zeros((2, 3), dtype=np.float32)


def test_a_model_save_checks_its_requirements_through_the_attribute_tuner_replaces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's save path looks the check up on `mlflow.utils.environment` at each save, so
    replacing that attribute is what skips it; unreplaced, a requirement that the installed
    packages do not meet is reported."""
    checked: list[list[str]] = []
    original = environment.warn_dependency_requirement_mismatches
    monkeypatch.setattr(environment, "warn_dependency_requirement_mismatches",
                        lambda requirements: checked.append(list(requirements)))
    model, example = _tiny()
    mlflow.pytorch.save_model(model, str(tmp_path / "model"), input_example=example,
                              serialization_format="pt2", pip_requirements=["torch==0.0.1"])
    assert any("torch==0.0.1" in found for found in checked), checked
    monkeypatch.setattr(environment, "warn_dependency_requirement_mismatches", original)
    warned: list[str] = []
    monkeypatch.setattr(requirements_utils._logger, "warning",
                        lambda message, *args, **kwargs: warned.append(str(message)))
    original(["torch==0.0.1"])
    assert any("torch (current: " in message for message in warned), warned


def test_inside_the_block_the_check_is_skipped_and_restored_after_nested_threaded_blocks() -> None:
    original = environment.warn_dependency_requirement_mismatches
    entered = threading.Barrier(2)
    seen: list[object] = []

    def save_like() -> None:
        with requirements_as_given():
            entered.wait(timeout=30)
            with requirements_as_given():
                seen.append(environment.warn_dependency_requirement_mismatches)
            entered.wait(timeout=30)  # both threads inside before either leaves

    threads = [threading.Thread(target=save_like) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(seen) == 2 and all(found is not original for found in seen)
    assert environment.warn_dependency_requirement_mismatches is original


_FRESH_PROCESS = """
import sys
import mlflow.pytorch
import mlflow.utils.environment as environment
import mlflow.utils.requirements_utils as requirements_utils
import numpy as np
import torch
from tuner.tracking._model_io import save_torch_model

original = environment.warn_dependency_requirement_mismatches
model = torch.nn.Sequential(torch.nn.Linear(3, 2))
example = np.zeros((2, 3), dtype=np.float32)
save_torch_model(sys.argv[1] + "/tuner", model, example)
assert requirements_utils._MODULES_TO_PACKAGES is None, "installed packages were scanned"
assert environment.warn_dependency_requirement_mismatches is original
version = torch.__version__.split("+")[0]
mlflow.pytorch.save_model(model, sys.argv[1] + "/plain", input_example=example,
                          serialization_format="pt2", pip_requirements=[f"torch=={version}"])
assert requirements_utils._MODULES_TO_PACKAGES is not None, "MLflow no longer scans"
print("clean")
"""


def test_tuners_save_scans_no_installed_package_and_writes_the_same_requirements(
        tmp_path: Path) -> None:
    """In a fresh process (MLflow scans once per process): tuner's save leaves MLflow's map of
    installed packages unbuilt, and the model's requirement files are those of a plain save."""
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(tmp_path)],
                          env={k: v for k, v in os.environ.items()
                               if k != "MLFLOW_TRACKING_URI"},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and "clean" in done.stdout, done.stderr[-2000:]
    for name in ("requirements.txt", "python_env.yaml", "conda.yaml"):
        assert (tmp_path / "tuner" / name).read_text() == (tmp_path / "plain" / name).read_text()
