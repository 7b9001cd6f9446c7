"""The `data:` section of a space file: where the rows come from and how they are split.

Parsed once into a frozen, hashable `DataSpec` (it is the key of the per-process data cache).
Only the form is checked here; what needs the rows themselves (columns, classes) is checked
when the data are loaded, still before any study or MLflow run exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuner.space._yaml import Document

BUNDLED = {
    "digits": "classification",
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "diabetes": "regression",
}
TABLE_SOURCES = ("csv", "parquet")
IMAGE_SOURCES = ("idx", "npz")  # these files carry their own test part
SOURCES = (*BUNDLED, "synthetic", *TABLE_SOURCES, *IMAGE_SOURCES)
MISSING = ("drop", "mean", "median", "most_frequent", "constant", "interpolate")
TASKS = ("classification", "regression")
MAX_FOLDS = 20

_COMMON = {"source", "task", "val_fraction", "test_fraction", "seed", "cv_folds", "oversample",
           "class_weight"}
_KEYS = {
    "bundled": _COMMON,
    "synthetic": _COMMON | {"synthetic"},
    "table": _COMMON | {"path", "target", "features", "drop", "categorical", "missing", "fill_value"},
    "image": _COMMON | {"path"},
}
_SYNTHETIC_KEYS = {"samples", "features", "informative", "classes", "noise", "weights", "seed"}


@dataclass(frozen=True)
class SyntheticSpec:
    """scikit-learn's make_classification / make_regression, seeded."""

    samples: int = 1000
    features: int = 20
    informative: int = 10
    classes: int = 2
    noise: float = 0.0  # classification: share of labels flipped; regression: noise std
    weights: tuple[float, ...] = ()  # class proportions, for imbalance; empty: balanced
    seed: int = 0


@dataclass(frozen=True)
class DataSpec:
    source: str = "digits"
    task: str = "classification"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    path: str | None = None  # relative paths are relative to the working folder
    target: str | None = None
    features: tuple[str, ...] = ()  # empty: every column but the target and `drop`
    drop: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()  # besides the non-numeric columns
    missing: str | None = None  # None: a missing value is an error
    fill_value: float | str | None = None
    oversample: bool = False
    # None, "balanced", or explicit weights: ((class name, weight), ...) or (w0, w1, ...)
    class_weight: str | tuple[tuple[str, float], ...] | tuple[float, ...] | None = None
    cv_folds: int = 0  # 0: one train / validation split; k >= 2: k-fold on train + validation
    synthetic: SyntheticSpec | None = None

    @property
    def kind(self) -> str:
        if self.source in BUNDLED:
            return "bundled"
        if self.source in TABLE_SOURCES:
            return "table"
        if self.source in IMAGE_SOURCES:
            return "image"
        return "synthetic"

    @property
    def own_test(self) -> bool:
        """The files hold their own test part; `test_fraction` is not used."""
        return self.source in IMAGE_SOURCES


def check_keys(doc: Document, path: tuple[str, ...], raw: Mapping[str, Any], allowed: set[str]) -> None:
    for key in raw:
        if key not in allowed:
            raise doc.error((*path, key),
                            f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")


def get(doc: Document, raw: Mapping[str, Any], path: tuple[str, ...], key: str, kind: type[Any],
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
    if kind is float and not math.isfinite(value):  # nan passes every comparison below
        raise doc.error(where, f"must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise doc.error(where, f"must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise doc.error(where, f"must be <= {maximum}, got {value!r}")
    return value


def parse_data(doc: Document, raw: Mapping[str, Any]) -> DataSpec:
    path = ("data",)
    source = get(doc, raw, path, "source", str, "digits", choices=SOURCES)
    spec = DataSpec(source=source)
    kind = spec.kind
    check_keys(doc, path, raw, _KEYS[kind])
    task = _task(doc, raw, source, kind)
    val = get(doc, raw, path, "val_fraction", float, 0.2, minimum=0.01, maximum=0.9)
    test = get(doc, raw, path, "test_fraction", float, 0.2, minimum=0.01, maximum=0.9)
    if spec.own_test and "test_fraction" in raw:
        raise doc.error((*path, "test_fraction"),
                        f"{source} files have their own test part; remove test_fraction")
    if not spec.own_test and val + test >= 0.95:
        raise doc.error((*path, "test_fraction"),
                        f"val_fraction + test_fraction = {val + test:g} leaves too little to train on")
    folds = get(doc, raw, path, "cv_folds", int, 0, maximum=MAX_FOLDS)
    if folds == 1 or folds < 0:
        raise doc.error((*path, "cv_folds"), f"must be 0 (no cross-validation) or >= 2, got {folds}")
    classification = task == "classification"
    oversample = get(doc, raw, path, "oversample", bool, False)
    if oversample and not classification:
        raise doc.error((*path, "oversample"), "oversampling needs classes (a classification task)")
    fields: dict[str, Any] = {
        "source": source, "task": task, "val_fraction": val, "test_fraction": test,
        "seed": get(doc, raw, path, "seed", int, 0, minimum=0), "cv_folds": folds,
        "oversample": oversample,
        "class_weight": _class_weight(doc, raw.get("class_weight"), classification),
    }
    if kind in ("table", "image"):
        if "path" not in raw:
            raise doc.error((*path, "path"), f"a {source} source needs `path:` "
                            f"({'a folder with the IDX files' if source == 'idx' else 'the file'})")
        fields["path"] = get(doc, raw, path, "path", str, None)
    if kind == "table":
        fields.update(_table(doc, raw))
    if kind == "synthetic":
        fields["synthetic"] = _synthetic(doc, raw.get("synthetic", {}), classification)
    return DataSpec(**fields)


def _task(doc: Document, raw: Mapping[str, Any], source: str, kind: str) -> str:
    where = ("data", "task")
    if kind == "bundled":
        task = get(doc, raw, ("data",), "task", str, BUNDLED[source], choices=TASKS)
        if task != BUNDLED[source]:
            raise doc.error(where, f"{source} is a {BUNDLED[source]} data set, not {task}")
        return task
    if kind == "table" and "task" not in raw:
        raise doc.error(where, f"a {source} source needs `task:` (classification or regression)")
    task = get(doc, raw, ("data",), "task", str, "classification", choices=TASKS)
    if kind == "image" and task != "classification":
        raise doc.error(where, f"{source} image sets are classification data, not {task}")
    return task


def _names(doc: Document, raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int) and not isinstance(v, bool)
                                              for v in value):
        raise doc.error(("data", key), f"must be a list of column names, got {value!r}")
    names = tuple(str(v) for v in value)
    if len(set(names)) != len(names):
        raise doc.error(("data", key), f"lists a column twice: {list(names)}")
    return names


def _table(doc: Document, raw: Mapping[str, Any]) -> dict[str, Any]:
    path = ("data",)
    if "target" not in raw:
        raise doc.error((*path, "target"), "a table source needs `target:` (the column to predict)")
    target = raw["target"]
    if not isinstance(target, str | int) or isinstance(target, bool):
        raise doc.error((*path, "target"), f"must be a column name, got {target!r}")
    target = str(target)
    features, drop, categorical = (_names(doc, raw, k) for k in ("features", "drop", "categorical"))
    for key, names in (("features", features), ("drop", drop), ("categorical", categorical)):
        if target in names:
            raise doc.error((*path, key), f"lists the target column {target!r}")
    if features:
        for name in categorical:
            if name not in features:
                raise doc.error((*path, "categorical"), f"column {name!r} is not in `features`")
    missing = raw.get("missing")
    if missing is not None:
        missing = get(doc, raw, path, "missing", str, None, choices=MISSING)
    fill = raw.get("fill_value")
    if fill is not None:
        if missing != "constant":
            raise doc.error((*path, "fill_value"), "is used only with `missing: constant`")
        if not isinstance(fill, int | float | str) or isinstance(fill, bool):
            raise doc.error((*path, "fill_value"), f"must be a number or a string, got {fill!r}")
    return {"target": target, "features": features, "drop": drop, "categorical": categorical,
            "missing": missing, "fill_value": fill}


def _class_weight(doc: Document, raw: Any, classification: bool) -> Any:
    where = ("data", "class_weight")
    if raw is None or raw == "none":
        return None
    if not classification:
        raise doc.error(where, "class weights need classes (a classification task)")
    if raw == "balanced":
        return "balanced"

    def weight(value: Any, key: tuple[str, ...]) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise doc.error(key, f"a class weight must be a number > 0, got {value!r}")
        return float(value)

    if isinstance(raw, list) and raw:
        return tuple(weight(v, where) for v in raw)
    if isinstance(raw, Mapping) and raw:
        return tuple((str(k), weight(v, (*where, str(k)))) for k, v in raw.items())
    raise doc.error(where, "must be `balanced`, a list of weights (one per class, in class order) "
                    f"or a mapping class -> weight, got {raw!r}")


def _synthetic(doc: Document, raw: Any, classification: bool) -> SyntheticSpec:
    path = ("data", "synthetic")
    if not isinstance(raw, Mapping):
        raise doc.error(path, "must be a mapping (samples, features, informative, classes, ...)")
    check_keys(doc, path, raw, _SYNTHETIC_KEYS)
    samples = get(doc, raw, path, "samples", int, 1000, minimum=10, maximum=10_000_000)
    features = get(doc, raw, path, "features", int, 20, minimum=1, maximum=100_000)
    informative = get(doc, raw, path, "informative", int, min(10, features), minimum=1,
                      maximum=features)
    classes = get(doc, raw, path, "classes", int, 2, minimum=2, maximum=1000)
    if not classification and "classes" in raw:
        raise doc.error((*path, "classes"), "a regression data set has no classes")
    if classification and classes > 2 ** informative:
        raise doc.error((*path, "classes"),
                        f"{classes} classes need at least {(classes - 1).bit_length()} informative "
                        f"features, got {informative}")
    noise = get(doc, raw, path, "noise", float, 0.0, minimum=0.0)
    if classification and noise > 1:
        raise doc.error((*path, "noise"), f"is the share of flipped labels (0 to 1), got {noise}")
    weights: tuple[float, ...] = ()
    if "weights" in raw:
        if not classification:
            raise doc.error((*path, "weights"), "class proportions need a classification task")
        values = raw["weights"]
        if (not isinstance(values, list) or len(values) != classes
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0
                           for v in values)):
            raise doc.error((*path, "weights"),
                            f"must list {classes} positive class proportions, got {values!r}")
        total = float(sum(values))
        weights = tuple(float(v) / total for v in values)
    seed = get(doc, raw, path, "seed", int, 0, minimum=0)
    return SyntheticSpec(samples, features, informative, classes, noise, weights, seed)
