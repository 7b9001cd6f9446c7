"""Optuna's views of a study (history, importances, ...) as HTML and PNG files."""

from __future__ import annotations

import optuna


def study_views(study: optuna.Study) -> dict[str, str | bytes]:
    """File name -> content of each view of `study`; filled in by the comparison work."""
    return {}
