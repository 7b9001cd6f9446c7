"""Reading a study's best trial back, and `tuner export`: the best configuration as a space
file whose parameters are all fixed, which `tuner train` trains as is.

Light on purpose (no torch): `tuner export` answers in the time Optuna takes to open the study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tuner._errors import TunerError
from tuner._spec import Space, parse_space
from tuner._storage import describe, open_storage
from tuner._study import ATTR_SPACE_FILE, ATTR_SPACE_TEXT, TRIAL_BEST_EPOCH, TRIAL_PARAMS, TRIAL_SEED
from tuner._yaml import load_yaml


def export_study(study_name: str, storage: str | None, output: Path, force: bool = False) -> Path:
    """Write the best trial's configuration as a space file that `tuner train` runs as is."""
    study, space = load_study_space(study_name, storage)
    best = best_trial(study, study_name)
    if output.exists() and not force:
        raise TunerError(f"{output} exists; choose another --output or pass --force")
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
    doc["params"] = _fixed_params(dict(best.user_attrs.get(TRIAL_PARAMS, best.params)))
    header = (f"# Exported by `tuner export` from study {study_name}: trial {best.number}, "
              f"{space.objective.key} = {best.value:.6g} after {training['max_epochs']} epochs.\n"
              "# `tuner train THIS_FILE` retrains it on train + validation for those epochs "
              "(study.seed is the\n# trial's torch seed) and evaluates it once on the test "
              "split.\n")
    text = header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
    parse_space(text, file=str(output))  # what is written must load
    output.write_text(text, encoding="utf-8")
    return output


def load_study_space(study_name: str, storage: str | None) -> tuple[Any, Space]:
    import optuna

    opened = open_storage(storage)
    names = [s.study_name for s in opened.get_all_studies()]
    if study_name not in names:
        raise TunerError(f"no study {study_name!r} in {describe(storage)}; "
                         f"studies: {', '.join(names) or 'none'}")
    study = optuna.load_study(study_name=study_name, storage=opened)
    text = study.user_attrs.get(ATTR_SPACE_TEXT)
    if text is None:
        raise TunerError(f"study {study_name!r} was not created by tuner (no space stored with it)")
    file = str(study.user_attrs.get(ATTR_SPACE_FILE, study_name))
    return study, parse_space(text, file=file, default_name=Path(file).stem)


def best_trial(study: Any, name: str) -> Any:
    try:
        return study.best_trial
    except ValueError:
        raise TunerError(f"study {name!r} has no complete trial yet") from None


def best_epoch(trial: Any, space: Space) -> int:
    """The epoch whose weights the trial kept (recorded by the trial; else its reports)."""
    recorded = trial.user_attrs.get(TRIAL_BEST_EPOCH)
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    values = trial.intermediate_values
    if values:
        pick = max if space.objective.direction == "maximize" else min
        return int(pick(values, key=lambda epoch: values[epoch]))
    return space.training.max_epochs


def _fixed_params(params: dict[str, Any]) -> dict[str, Any]:
    """Trial parameters as plain values; per-layer widths `units_i` become `units: [...]`."""
    widths = sorted((int(k.split("_")[1]), v) for k, v in params.items()
                    if k.startswith("units_") and k.split("_")[1].isdigit())
    out = {k: v for k, v in params.items() if not k.startswith("units_")}
    if not widths:
        return out
    layers = int(out.pop("n_layers", len(widths)))
    units = [int(w) for i, w in widths if i < layers]
    return {"n_layers": len(units), "units": units, **out}
