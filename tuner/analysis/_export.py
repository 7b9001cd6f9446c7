"""`tuner export`: a study's best configuration as a space file whose parameters are all fixed,
which `tuner train` trains as is.

Light on purpose (no torch): `tuner export` answers in the time Optuna takes to open the study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuner.errors import OptionError, TunerError
from tuner.search import (
    TRIAL_PARAMS,
    TRIAL_SEED,
    best_epoch,
    final_trial,
    find_study,
    stored_space,
)
from tuner.space import load_yaml, parse_space


def export_study(study_name: str, storage: str | None, output: Path, force: bool = False) -> Path:
    """Write the study's final configuration (its best trial, unless re-evaluation chose another)
    as a space file that `tuner train` runs as is."""
    study = find_study(storage, study_name)
    space = stored_space(study)
    best = final_trial(study)
    if output.exists() and not force:
        raise OptionError("output", f"{output} exists; choose another file, or pass "
                          "{force=True} to overwrite it")
    if not output.parent.is_dir():
        raise TunerError(f"folder {str(output.parent)!r} does not exist")
    raw = load_yaml(space.text, space.file).data
    data = dict(raw.get("data") or {})
    if isinstance(data.get("path"), str):
        where = Path(data["path"]).expanduser()
        if not where.is_absolute() and where.exists():
            data["path"] = str(where.absolute())  # the file runs from any folder
    training = dict(raw.get("training") or {})
    training["max_epochs"] = best_epoch(best, space)
    training["early_stopping"] = False
    doc: dict[str, Any] = {"name": space.name,
                           "description": f"best configuration of study {study_name}"}
    for key, value in (("data", data), ("objective", raw.get("objective")),
                       ("training", training)):
        if value:
            doc[key] = value
    doc["study"] = {"seed": int(best.user_attrs.get(TRIAL_SEED, 0))}
    doc["params"] = _as_fixed(dict(best.user_attrs.get(TRIAL_PARAMS, best.params)))
    header = (f"# Exported by `tuner export` from study {study_name}: trial {best.number}, "
              f"{space.objective.key} = {best.value:.6g} after {training['max_epochs']} epochs.\n"
              "# `tuner train THIS_FILE` retrains it on train + validation for those epochs "
              "(study.seed is the\n# trial's torch seed) and evaluates it once on the test "
              "split.\n")
    text = header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
    parse_space(text, file=str(output))  # what is written must load
    output.write_text(text, encoding="utf-8")
    return output


def _as_fixed(params: dict[str, Any]) -> dict[str, Any]:
    """Trial parameters as plain values; per-layer widths `units_i` become `units: [...]`."""
    widths = sorted((int(k.split("_")[1]), v) for k, v in params.items()
                    if k.startswith("units_") and k.split("_")[1].isdigit())
    out = {k: v for k, v in params.items() if not k.startswith("units_")}
    if not widths:
        return out
    layers = int(out.pop("n_layers", len(widths)))
    units = [int(w) for i, w in widths if i < layers]
    return {"n_layers": len(units), "units": units, **out}
