"""A whole space file, parsed once into frozen objects: data, objective, training, study, params."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tuner.errors import SpaceError
from tuner.space._data import BUNDLED as BUNDLED  # re-exported: the bundled set names
from tuner.space._data import DataSpec, parse_data
from tuner.space._data import check_keys as _check_keys
from tuner.space._data import get as _get
from tuner.space._final import FinalSpec, parse_final
from tuner.space._hyperparameters import check_value
from tuner.space._metrics import METRICS, metrics_for
from tuner.space._parameters import ParameterSpace, parse_parameters
from tuner.space._params import MAX_GRID_POINTS, FixedParam
from tuner.space._yaml import MAX_BYTES, Document, load_yaml

STRATEGIES = ("grid", "random", "tpe", "gp", "cmaes", "qmc", "nsga2")
MULTI_STRATEGIES = ("nsga2", "tpe", "gp")  # the Optuna samplers that handle several objectives
MODELS = ("mlp", "custom")
# Objectives measured on a trained MLP rather than logged per epoch: its size and speed.
EXTRA_OBJECTIVES = {"params": "minimize", "latency": "minimize"}
PRUNERS = ("none", "median", "asha", "hyperband")
LOSSES = {"classification": ("cross_entropy",), "regression": ("mse", "mae", "huber")}
_TOP_KEYS = {"name", "description", "data", "objective", "objectives", "constraints", "training",
             "study", "params", "model", "trainer", "enqueue"}


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str
    logged: str | None = None  # a custom trainer's own name for it (`key:`), used as is

    @property
    def key(self) -> str:
        """The name under which the metric is logged per epoch. A custom trainer reports its
        own names; `params` and `latency` (ms per 1,000 rows) are measured after training."""
        if self.logged is not None:
            return self.logged
        if self.metric.startswith("val_") or self.metric in EXTRA_OBJECTIVES:
            return self.metric
        return f"val_{self.metric}"


@dataclass(frozen=True)
class Constraint:
    """`key <= max` and/or `key >= min` on a trial's final metrics (feasible when both hold)."""

    key: str
    max: float | None = None
    min: float | None = None

    def violation(self, metrics: Mapping[str, float]) -> float:
        """Optuna's convention: <= 0 is feasible, the size of a breach otherwise."""
        value = metrics.get(self.key)
        if value is None:
            return 1.0
        over = value - self.max if self.max is not None else -math.inf
        under = self.min - value if self.min is not None else -math.inf
        return float(max(over, under))

    def describe(self) -> str:
        parts = [f"{self.key} <= {self.max:g}" if self.max is not None else "",
                 f"{self.key} >= {self.min:g}" if self.min is not None else ""]
        return " and ".join(p for p in parts if p)


@dataclass(frozen=True)
class EarlyStopping:
    monitor: str
    direction: str
    patience: int = 5
    min_delta: float = 0.0
    restore_best_weights: bool = True


@dataclass(frozen=True)
class Loss:
    """The training criterion; `huber_delta` is in standardised target units."""

    name: str = "cross_entropy"  # classification: cross_entropy; regression: mse, mae, huber
    huber_delta: float = 1.0


@dataclass(frozen=True)
class Training:
    max_epochs: int = 30
    early_stopping: EarlyStopping | None = None
    loss: Loss = Loss()


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
    final: FinalSpec = field(default_factory=FinalSpec)  # how the final model is chosen (tuner.space._final)


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
    model: str = "mlp"  # custom: a user's trainer gets the parameters (see tuner.training._custom)
    trainer: str | None = None  # "module:function" or "file.py:function" for `model: custom`
    objectives: tuple[Objective, ...] = ()  # all objectives; the first is `objective`
    constraints: tuple[Constraint, ...] = ()
    enqueue: tuple[Mapping[str, Any], ...] = ()  # known points, run before any sampled one

    @property
    def multi(self) -> bool:
        return len(self.objectives) > 1

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical.encode()).hexdigest()[:12]


def load_space(path: str | Path) -> Space:
    """Read and validate a space file; every problem is a one-line `SpaceError`."""
    path = Path(path)
    try:
        with path.open("rb") as handle:  # a huge file is refused without reading it whole
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise SpaceError(f"the file is larger than {MAX_BYTES:,} bytes, the most a space file "
                             "may have", file=str(path))
        text = raw.decode("utf-8")
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
    model = raw.get("model", "mlp")
    if model not in MODELS:
        raise doc.error(("model",), f"must be one of {', '.join(MODELS)}, got {model!r}")
    custom = model == "custom"
    trainer = raw.get("trainer")
    if trainer is not None and (not custom or not isinstance(trainer, str) or ":" not in trainer):
        raise doc.error(("trainer",), "is for `model: custom`: a 'module:function' or "
                        "'file.py:function' string")
    data = parse_data(doc, _section(doc, raw, "data"))
    objectives = _objectives(doc, raw, data.task, custom)
    objective = objectives[0]
    training = _training(doc, _section(doc, raw, "training"), objective, data.task, custom)
    study_raw = _section(doc, raw, "study")
    study = _study(doc, study_raw)
    study = replace(study, final=parse_final(doc, study_raw.get("final"), custom,
                                             len(objectives) > 1))
    grid_points = _get(doc, study_raw, ("study",), "grid_points", int, 3, minimum=1,
                       maximum=MAX_GRID_POINTS)
    if "params" not in raw:
        raise doc.error(("params",), "missing section: a space needs at least one parameter")
    params = (parse_parameters(doc, raw["params"], grid_points, known=False) if custom
              else _parameters(doc, raw["params"], grid_points))
    constraints = _constraints(doc, raw.get("constraints"), objectives)
    enqueue = _enqueue(doc, raw.get("enqueue"), params)
    if len(objectives) > 1 and study.strategy not in MULTI_STRATEGIES:
        raise doc.error(("study", "strategy"), f"strategy {study.strategy!r} cannot search "
                        f"several objectives; use one of {', '.join(MULTI_STRATEGIES)}")
    searched = {k: v for k, v in raw.items() if k not in ("name", "description", "study")}
    # The budget, the seed and how the final model is chosen do not change what is searched.
    searched["study"] = {k: v for k, v in study_raw.items()
                         if k not in ("trials", "strategy", "seed", "final")}
    canonical = json.dumps(searched, sort_keys=True, default=str)
    return Space(name, file, text, data, objective, training, study, params, canonical,
                 model, trainer, objectives, constraints, enqueue)


def _section(doc: Document, raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise doc.error((key,), f"must be a mapping, got {type(value).__name__}")
    return value


def _objectives(doc: Document, raw: Mapping[str, Any], task: str,
                custom: bool) -> tuple[Objective, ...]:
    """`objective:` (one) or `objectives:` (a list, searched together for a Pareto front)."""
    if "objectives" not in raw:
        return (_objective(doc, _section(doc, raw, "objective"), task, custom, ("objective",)),)
    if "objective" in raw:
        raise doc.error(("objectives",), "give either `objective:` or `objectives:`, not both")
    items = raw["objectives"]
    if not isinstance(items, list) or not items:
        raise doc.error(("objectives",), "must be a non-empty list of {metric, direction}")
    out: list[Objective] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"metric": item}
        if not isinstance(item, Mapping):
            raise doc.error(("objectives", str(i)), "must be a metric name or {metric, direction}")
        obj = _objective(doc, item, task, custom, ("objectives", str(i)))
        if obj.key in {o.key for o in out}:
            raise doc.error(("objectives", str(i)), f"objective {obj.key!r} is listed twice")
        out.append(obj)
    return tuple(out)


def _objective(doc: Document, raw: Mapping[str, Any], task: str, custom: bool = False,
               path: tuple[str, ...] = ("objective",)) -> Objective:
    _check_keys(doc, path, raw, {"metric", "direction", "key"} if custom
                else {"metric", "direction"})
    default = "accuracy" if task == "classification" else "rmse"
    if custom:  # a custom trainer reports metrics of its own choosing
        metric = _get(doc, raw, path, "metric", str, default)
        if "key" in raw:
            return Objective(metric, _get(doc, raw, path, "direction", str, "maximize",
                                          choices=("maximize", "minimize")),
                             _get(doc, raw, path, "key", str, metric))
        fallback = METRICS[metric].direction if metric in METRICS else "maximize"
    else:
        metric = _get(doc, raw, path, "metric", str, default,
                      choices=(*metrics_for(task), *EXTRA_OBJECTIVES))
        fallback = EXTRA_OBJECTIVES.get(metric) or METRICS[metric].direction
    direction = _get(doc, raw, path, "direction", str, fallback,
                     choices=("maximize", "minimize"))
    return Objective(metric, direction)


def _constraints(doc: Document, raw: Any, objectives: tuple[Objective, ...]
                 ) -> tuple[Constraint, ...]:
    """`constraints: {params: {max: 50000}}`: keys are objective or metric keys."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise doc.error(("constraints",), "must map a metric to {max: ..., min: ...}")
    out = []
    for key, bound in raw.items():
        path = ("constraints", key)
        if not isinstance(bound, Mapping) or not bound:
            raise doc.error(path, "must be a mapping with `max:` and/or `min:`")
        _check_keys(doc, path, bound, {"max", "min"})
        low, high = (_get(doc, bound, path, k, float, 0.0) if k in bound else None
                     for k in ("min", "max"))
        out.append(Constraint(str(key), high, low))
    return tuple(out)


def _enqueue(doc: Document, raw: Any, params: ParameterSpace) -> tuple[Mapping[str, Any], ...]:
    """`enqueue:` a list of known configurations (e.g. the reference recipe), run first."""
    if raw is None:
        return ()
    return check_points(doc, raw, params, ("enqueue",))


def check_points(doc: Document, raw: Any, params: ParameterSpace,
                 path: tuple[str, ...]) -> tuple[Mapping[str, Any], ...]:
    """Known configurations (`enqueue:` in a space, or a `--enqueue` file): a list of
    {parameter: value}, each naming parameters of the space with values inside their ranges."""
    if not isinstance(raw, list) or not all(isinstance(p, Mapping) for p in raw):
        raise doc.error(path, "must be a list of {parameter: value} mappings")
    by_name = {p.name: p for p in params}
    for i, point in enumerate(raw):
        unknown = sorted(set(point) - set(by_name))
        if unknown:
            raise doc.error((*path, str(i)), f"unknown parameter(s) {', '.join(unknown)}; the "
                            f"space has {', '.join(sorted(by_name))}")
        for name, value in point.items():
            if not by_name[name].contains(value):
                raise doc.error((*path, str(i), name), f"{value!r} lies outside "
                                f"{by_name[name].describe()}")
    return tuple(dict(p) for p in raw)


def _training(doc: Document, raw: Mapping[str, Any], objective: Objective, task: str,
              custom: bool = False) -> Training:
    path = ("training",)
    _check_keys(doc, path, raw, {"max_epochs", "early_stopping", "loss", "huber_delta"})
    max_epochs = _get(doc, raw, path, "max_epochs", int, 30, minimum=1, maximum=100_000)
    losses = LOSSES[task]
    loss = _get(doc, raw, path, "loss", str, losses[0], choices=losses)
    if "huber_delta" in raw and loss != "huber":
        raise doc.error((*path, "huber_delta"), "is used only with `loss: huber`")
    delta = _get(doc, raw, path, "huber_delta", float, 1.0, minimum=1e-9)
    criterion = Loss(loss, delta)
    es_raw = raw.get("early_stopping", {})
    if es_raw is False or es_raw is None:
        return Training(max_epochs, None, criterion)
    if es_raw is True:
        es_raw = {}
    if not isinstance(es_raw, Mapping):
        raise doc.error((*path, "early_stopping"), "must be a mapping, or false to disable it")
    es_path = (*path, "early_stopping")
    _check_keys(doc, es_path, es_raw,
                {"monitor", "patience", "min_delta", "restore_best_weights"})
    monitor = _get(doc, es_raw, es_path, "monitor", str, objective.metric,
                   choices=(objective.metric,) if custom else tuple(metrics_for(task)))
    direction = objective.direction if monitor == objective.metric else METRICS[monitor].direction
    early = EarlyStopping(
        monitor=monitor,
        direction=direction,
        patience=_get(doc, es_raw, es_path, "patience", int, 5, minimum=1),
        min_delta=_get(doc, es_raw, es_path, "min_delta", float, 0.0, minimum=0.0),
        restore_best_weights=_get(doc, es_raw, es_path, "restore_best_weights", bool, True),
    )
    return Training(max_epochs, early, criterion)


def _parameters(doc: Document, raw: Any, grid_points: int) -> ParameterSpace:
    """`parse_parameters`, plus `units: [w0, w1, ...]`: fixed per-layer widths, the form in which
    `tuner export` writes one trained configuration."""
    widths = raw.get("units") if isinstance(raw, Mapping) else None
    if not isinstance(widths, list):
        return parse_parameters(doc, raw, grid_points)
    where = ("params", "units")
    if not widths:
        raise doc.error(where, "a list of per-layer widths needs at least one width")
    for width in widths:
        problem = check_value("units", width)
        if problem is not None:
            raise doc.error(where, problem)
    layers = raw.get("n_layers", len(widths))
    if layers != len(widths) or isinstance(layers, bool):
        raise doc.error(("params", "n_layers"), f"must be fixed at {len(widths)}, the number of "
                        f"widths in params.units, got {layers!r}")
    rest = {k: v for k, v in raw.items() if k not in ("units", "n_layers")}
    fixed = (FixedParam("n_layers", len(widths)),
             *(FixedParam(f"units_{i}", int(w)) for i, w in enumerate(widths)))
    if not rest:
        return ParameterSpace(fixed, grid_points)
    parsed = parse_parameters(doc, rest, grid_points)
    return ParameterSpace(fixed + parsed.params, grid_points)


def _study(doc: Document, raw: Mapping[str, Any]) -> StudyDefaults:
    path = ("study",)
    _check_keys(doc, path, raw, {"strategy", "trials", "seed", "pruner", "grid_points", "final"})
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
