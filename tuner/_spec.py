"""A whole space file, parsed once into frozen objects: data, objective, training, study, params."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuner._errors import SpaceError
from tuner._metrics import METRICS, metrics_for
from tuner._space import ParameterSpace, parse_parameters
from tuner._yaml import Document, load_yaml

STRATEGIES = ("grid", "random", "tpe", "gp", "cmaes", "qmc")
PRUNERS = ("none", "median", "asha", "hyperband")
BUNDLED = {
    "digits": "classification",
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "diabetes": "regression",
}
_TOP_KEYS = {"name", "description", "data", "objective", "training", "study", "params"}


@dataclass(frozen=True)
class DataSpec:
    source: str = "digits"
    task: str = "classification"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str

    @property
    def key(self) -> str:
        """The name under which the metric is logged per epoch."""
        return f"val_{self.metric}"


@dataclass(frozen=True)
class EarlyStopping:
    monitor: str
    direction: str
    patience: int = 5
    min_delta: float = 0.0
    restore_best_weights: bool = True


@dataclass(frozen=True)
class Training:
    max_epochs: int = 30
    early_stopping: EarlyStopping | None = None


@dataclass(frozen=True)
class PrunerSpec:
    name: str = "median"
    startup_trials: int = 5
    warmup_epochs: int = 2
    min_resource: int = 1
    reduction_factor: int = 3


@dataclass(frozen=True)
class StudyDefaults:
    strategy: str = "tpe"
    trials: int = 30
    seed: int = 0
    pruner: PrunerSpec = PrunerSpec()


@dataclass(frozen=True)
class Space:
    """A validated space file. `text` is kept so a study can store and restore its own space."""

    name: str
    file: str
    text: str
    data: DataSpec
    objective: Objective
    training: Training
    study: StudyDefaults
    params: ParameterSpace
    canonical: str  # sorted JSON of the parts that define the search (not the trial budget)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical.encode()).hexdigest()[:12]


def load_space(path: str | Path) -> Space:
    """Read and validate a space file; every problem is a one-line `SpaceError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError("file not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"cannot read file: {exc}", file=str(path)) from None
    return parse_space(text, file=str(path), default_name=path.stem)


def parse_space(text: str, *, file: str = "<space>", default_name: str = "space") -> Space:
    doc = load_yaml(text, file)
    raw = doc.data
    if not isinstance(raw, Mapping):
        raise SpaceError("the file must be a YAML mapping with a 'params' section", file=file)
    for key in raw:
        if key not in _TOP_KEYS:
            raise doc.error((key,), f"unknown key {key!r}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise doc.error(("name",), f"must be a non-empty string, got {name!r}")
    data = _data(doc, _section(doc, raw, "data"))
    objective = _objective(doc, _section(doc, raw, "objective"), data.task)
    training = _training(doc, _section(doc, raw, "training"), objective, data.task)
    study_raw = _section(doc, raw, "study")
    study = _study(doc, study_raw)
    grid_points = _get(doc, study_raw, ("study",), "grid_points", int, 3, minimum=1)
    if "params" not in raw:
        raise doc.error(("params",), "missing section: a space needs at least one parameter")
    params = parse_parameters(doc, raw["params"], grid_points)
    searched = {k: v for k, v in raw.items() if k not in ("name", "description", "study")}
    searched["study"] = {k: v for k, v in study_raw.items() if k not in ("trials", "strategy", "seed")}
    canonical = json.dumps(searched, sort_keys=True, default=str)
    return Space(name, file, text, data, objective, training, study, params, canonical)


def _section(doc: Document, raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise doc.error((key,), f"must be a mapping, got {type(value).__name__}")
    return value


def _check_keys(doc: Document, path: tuple[str, ...], raw: Mapping[str, Any], allowed: set[str]) -> None:
    for key in raw:
        if key not in allowed:
            raise doc.error((*path, key),
                            f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")


def _get(doc: Document, raw: Mapping[str, Any], path: tuple[str, ...], key: str, kind: type[Any],
         default: Any, *, minimum: float | None = None, maximum: float | None = None,
         choices: tuple[str, ...] | None = None) -> Any:
    value: Any = raw.get(key, default)
    where = (*path, key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise doc.error(where, f"must be {kind.__name__}, got {value!r}")
    if choices is not None and value not in choices:
        raise doc.error(where, f"unknown value {value!r}; choose from {list(choices)}")
    if minimum is not None and value < minimum:
        raise doc.error(where, f"must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise doc.error(where, f"must be <= {maximum}, got {value!r}")
    return value


def _data(doc: Document, raw: Mapping[str, Any]) -> DataSpec:
    path = ("data",)
    _check_keys(doc, path, raw, {"source", "task", "val_fraction", "test_fraction", "seed"})
    source = _get(doc, raw, path, "source", str, "digits", choices=tuple(BUNDLED))
    task = _get(doc, raw, path, "task", str, BUNDLED[source],
                choices=("classification", "regression"))
    if task != BUNDLED[source]:
        raise doc.error((*path, "task"), f"{source} is a {BUNDLED[source]} data set, not {task}")
    val = _get(doc, raw, path, "val_fraction", float, 0.2, minimum=0.01, maximum=0.9)
    test = _get(doc, raw, path, "test_fraction", float, 0.2, minimum=0.01, maximum=0.9)
    if val + test >= 0.95:
        raise doc.error((*path, "test_fraction"),
                        f"val_fraction + test_fraction = {val + test:g} leaves too little to train on")
    seed = _get(doc, raw, path, "seed", int, 0, minimum=0)
    return DataSpec(source, task, val, test, seed)


def _objective(doc: Document, raw: Mapping[str, Any], task: str) -> Objective:
    path = ("objective",)
    _check_keys(doc, path, raw, {"metric", "direction"})
    default = "accuracy" if task == "classification" else "rmse"
    metric = _get(doc, raw, path, "metric", str, default, choices=tuple(metrics_for(task)))
    direction = _get(doc, raw, path, "direction", str, METRICS[metric].direction,
                     choices=("maximize", "minimize"))
    return Objective(metric, direction)


def _training(doc: Document, raw: Mapping[str, Any], objective: Objective, task: str) -> Training:
    path = ("training",)
    _check_keys(doc, path, raw, {"max_epochs", "early_stopping"})
    max_epochs = _get(doc, raw, path, "max_epochs", int, 30, minimum=1, maximum=100_000)
    es_raw = raw.get("early_stopping", {})
    if es_raw is False or es_raw is None:
        return Training(max_epochs, None)
    if es_raw is True:
        es_raw = {}
    if not isinstance(es_raw, Mapping):
        raise doc.error((*path, "early_stopping"), "must be a mapping, or false to disable it")
    es_path = (*path, "early_stopping")
    _check_keys(doc, es_path, es_raw,
                {"monitor", "patience", "min_delta", "restore_best_weights"})
    monitor = _get(doc, es_raw, es_path, "monitor", str, objective.metric,
                   choices=tuple(metrics_for(task)))
    direction = objective.direction if monitor == objective.metric else METRICS[monitor].direction
    early = EarlyStopping(
        monitor=monitor,
        direction=direction,
        patience=_get(doc, es_raw, es_path, "patience", int, 5, minimum=1),
        min_delta=_get(doc, es_raw, es_path, "min_delta", float, 0.0, minimum=0.0),
        restore_best_weights=_get(doc, es_raw, es_path, "restore_best_weights", bool, True),
    )
    return Training(max_epochs, early)


def _study(doc: Document, raw: Mapping[str, Any]) -> StudyDefaults:
    path = ("study",)
    _check_keys(doc, path, raw, {"strategy", "trials", "seed", "pruner", "grid_points"})
    strategy = _get(doc, raw, path, "strategy", str, "tpe", choices=STRATEGIES)
    trials = _get(doc, raw, path, "trials", int, 30, minimum=1)
    seed = _get(doc, raw, path, "seed", int, 0, minimum=0)
    pruner_raw = raw.get("pruner", "median")
    if isinstance(pruner_raw, str):
        pruner_raw = {"name": pruner_raw}
    if not isinstance(pruner_raw, Mapping):
        raise doc.error((*path, "pruner"), "must be a pruner name or a mapping with 'name'")
    p_path = (*path, "pruner")
    _check_keys(doc, p_path, pruner_raw,
                {"name", "startup_trials", "warmup_epochs", "min_resource", "reduction_factor"})
    pruner = PrunerSpec(
        name=_get(doc, pruner_raw, p_path, "name", str, "median", choices=PRUNERS),
        startup_trials=_get(doc, pruner_raw, p_path, "startup_trials", int, 5, minimum=0),
        warmup_epochs=_get(doc, pruner_raw, p_path, "warmup_epochs", int, 2, minimum=0),
        min_resource=_get(doc, pruner_raw, p_path, "min_resource", int, 1, minimum=1),
        reduction_factor=_get(doc, pruner_raw, p_path, "reduction_factor", int, 3, minimum=2),
    )
    return StudyDefaults(strategy, trials, seed, pruner)
