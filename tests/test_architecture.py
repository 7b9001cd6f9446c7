"""The architecture as code: the import-linter contracts hold, Optuna's private internals appear
in one module only, and modules stay small."""

from __future__ import annotations

import re
import shutil
import subprocess

from tests.conftest import REPO

PRIVATE_OPTUNA = re.compile(r"\._trial_id\b|\._study_id\b|\.set_trial_state_values\(|"
                            r"fixed_params|\._contains\(|optuna\.Trial\(")


def test_the_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports")
    assert lint is not None, "import-linter is part of the test extra"
    done = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "BROKEN" not in done.stdout


def test_private_optuna_internals_are_used_in_one_module_only() -> None:
    allowed = REPO / "tuner" / "search" / "_optuna.py"
    offenders = [f"{path.relative_to(REPO)}:{i}" for path in (REPO / "tuner").rglob("*.py")
                 if path != allowed
                 for i, line in enumerate(path.read_text().splitlines(), 1)
                 if PRIVATE_OPTUNA.search(line) and not line.lstrip().startswith("#")]
    assert offenders == []


def test_no_module_is_over_400_lines() -> None:
    sizes = {str(p.relative_to(REPO)): len(p.read_text().splitlines())
             for p in (REPO / "tuner").rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 400} == {}
