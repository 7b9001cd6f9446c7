"""From rows as read to the MLP's float32 matrix: cleaning, encoding, imputation, scaling.

`clean` works on the whole file and only does what needs no statistics: choosing the columns,
encoding the target, counting missing values, dropping rows. Everything fitted (imputation,
one-hot categories, standardisation) lives in a `Preprocessor` fitted on training rows only and
applied unchanged to validation, test and, later, raw rows sent to the logged model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tuner.data._sources import RawData, _listing, columns_of
from tuner.errors import DataError
from tuner.space import DataSpec

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

_IMPUTING = ("mean", "median", "most_frequent", "constant", "interpolate")


@dataclass(frozen=True)
class Scaler:
    """Affine standardisation fitted on the training split: x -> (x - mean) / scale."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Scaler:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        # Constant columns (digits has several) carry no signal; keep them at 0, not NaN.
        return cls(mean, np.where(scale > 0, scale, 1.0))

    @classmethod
    def identity(cls, width: int) -> Scaler:
        return cls(np.zeros(width), np.ones(width))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32)


@dataclass(frozen=True)
class Table:
    """Cleaned rows: features as read (a frame for tables, an array otherwise) and target."""

    x: pd.DataFrame | np.ndarray
    y: np.ndarray  # int64 class ids, or float64 regression targets
    origin: str
    target: str
    classes: tuple[str, ...]
    test_x: np.ndarray | None = None  # the file's own test part (image sets)
    test_y: np.ndarray | None = None
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    pixel_scale: float | None = None
    report: dict[str, float] = field(default_factory=dict)
    positions: np.ndarray | None = None  # each row's position in the file (None: the same)

    @property
    def is_frame(self) -> bool:
        return isinstance(self.x, pd.DataFrame)

    def rows(self, index: np.ndarray) -> tuple[Any, np.ndarray]:
        x = self.x.iloc[index] if isinstance(self.x, pd.DataFrame) else self.x[index]
        return x, self.y[index]


def clean(raw: RawData, spec: DataSpec) -> Table:
    report = dict(raw.report)
    positions = None
    if isinstance(raw.x, pd.DataFrame):
        x, y, numeric, categorical, positions = _clean_frame(raw, spec, report)
    else:
        x, y, numeric, categorical = raw.x, np.asarray(raw.y), (), ()
        report["rows"] = float(len(x))
    test_y = raw.test_y
    if spec.task == "regression":
        y = _numeric_target(raw, y)
        classes: tuple[str, ...] = ()
    elif raw.class_names:  # bundled and synthetic sets: the target already holds class ids
        y, classes = y.astype(np.int64), raw.class_names
    else:
        y, test_y, classes = _encode_classes(raw, y, test_y)
    if spec.task == "classification" and len(np.unique(y)) < 2:
        only = classes[int(y[0])] if len(y) else "none"
        raise DataError(f"{raw.origin}: column {raw.target!r} has a single class ({only!r}) in the "
                        "rows used for training; classification needs at least two")
    return Table(x, y, raw.origin, raw.target, classes, raw.test_x, test_y, numeric,
                 categorical, raw.pixel_scale, report, positions)


def _clean_frame(raw: RawData, spec: DataSpec, report: dict[str, float]
                 ) -> tuple[pd.DataFrame, np.ndarray, tuple, tuple, np.ndarray]:
    frame = raw.x
    assert isinstance(frame, pd.DataFrame)
    name, target = raw.origin, raw.target
    for key, names in (("features", spec.features), ("drop", spec.drop),
                       ("categorical", spec.categorical)):
        unknown = [c for c in names if c not in frame.columns]
        if unknown:
            raise DataError(f"{name}: data.{key} names column {unknown[0]!r}, which the file does "
                            f"not have; {columns_of(frame)}")
    columns = list(spec.features) or [c for c in frame.columns if c != target]
    columns = [c for c in columns if c not in spec.drop]
    if not columns:
        raise DataError(f"{name}: no feature columns left besides the target {target!r}")
    report["rows"] = float(len(frame))
    has_target = frame[target].notna().to_numpy()
    report["rows_missing_target"] = float((~has_target).sum())
    frame = frame.loc[has_target]  # a row without a target cannot be learned from or scored
    positions = np.flatnonzero(has_target)
    features = frame[columns]
    for column in columns:
        if features[column].isna().all():
            raise DataError(f"{name}: column {column!r} has no values (all missing)")
    missing = features.isna()
    per_column = missing.sum()
    report["missing_cells"] = float(per_column.sum())
    report["rows_with_missing"] = float(missing.any(axis=1).sum())
    if per_column.sum() and spec.missing is None:
        worst = per_column[per_column > 0]
        more = f" (and {len(worst) - 1} more columns)" if len(worst) > 1 else ""
        raise DataError(f"{name}: column {worst.index[0]!r} has {int(worst.iloc[0])} missing "
                        f"values{more}; set data.missing to drop, mean, median, most_frequent, "
                        "constant or interpolate")
    report["rows_dropped"] = 0.0
    report["cells_imputed"] = float(per_column.sum()) if spec.missing in _IMPUTING else 0.0
    if spec.missing == "drop" and per_column.sum():
        keep = ~missing.any(axis=1).to_numpy()
        report["rows_dropped"] = float((~keep).sum())
        frame, features, positions = frame.loc[keep], features.loc[keep], positions[keep]
        if not len(frame):
            raise DataError(f"{name}: no rows left after dropping the "
                            f"{int(report['rows_dropped'])} rows with missing values")
    categorical = tuple(c for c in columns if c in spec.categorical
                        or not pd.api.types.is_numeric_dtype(features[c])
                        or pd.api.types.is_bool_dtype(features[c]))
    numeric = tuple(c for c in columns if c not in categorical)
    for column in (*numeric, target):  # scikit-learn would refuse them without naming the column
        values = frame[column] if column == target else features[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            infinite = int(np.isinf(values.to_numpy(dtype=np.float64, na_value=np.nan)).sum())
            if infinite:
                raise DataError(f"{name}: column {column!r} has {infinite} infinite value"
                                f"{'s' if infinite > 1 else ''} (inf or -inf): remove them, or "
                                "leave the cells empty and set data.missing")
    return (features.reset_index(drop=True), frame[target].to_numpy(), numeric, categorical,
            positions)


def _numeric_target(raw: RawData, y: np.ndarray) -> np.ndarray:
    values = pd.to_numeric(pd.Series(y), errors="coerce")
    bad = values.isna() & pd.Series(y).notna()
    if bad.any():  # how many, not which: a message names columns, never the file's values
        raise DataError(f"{raw.origin}: column {raw.target!r}: a regression target must be "
                        f"numeric; {int(bad.sum())} of its {len(y)} values are not numbers")
    if np.isinf(values.to_numpy(dtype=np.float64)).any():
        raise DataError(f"{raw.origin}: column {raw.target!r} has infinite values (inf or -inf)")
    return values.to_numpy(dtype=np.float64)


def _encode_classes(raw: RawData, y: np.ndarray,
                    test_y: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, tuple]:
    both = y if test_y is None else np.concatenate([y, test_y])
    series = pd.Series(both)
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy()
        if np.issubdtype(values.dtype, np.floating) and np.all(values == np.round(values)):
            values = values.astype(np.int64)  # 0.0 / 1.0 labels are the classes 0 and 1
    else:
        values = series.astype(str).to_numpy()
    classes, ids = np.unique(values, return_inverse=True)
    ids = ids.astype(np.int64)
    names = tuple(str(c) for c in classes)
    if test_y is None:
        return ids, None, names
    return ids[:len(y)], ids[len(y):], names


# Module-level functions, so the fitted pipeline pickles with the logged model.
def as_float(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.apply(pd.to_numeric, errors="coerce").astype(np.float64)


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Categories as plain strings (1 and "1" are one category), missing ones as NaN."""
    return frame.astype(str).astype(object).where(frame.notna(), np.nan)


def interpolate(frame: pd.DataFrame) -> pd.DataFrame:
    """Linear interpolation along the rows in the order given (ordered data, e.g. time)."""
    return frame.interpolate(method="linear", limit_direction="both")


@dataclass(frozen=True)
class Preprocessor:
    """Fitted on training rows; `transform` gives the MLP's input. `pipeline` is the fitted
    scikit-learn ColumnTransformer for tables, None for numeric arrays (then `scaler` does it)."""

    scaler: Scaler
    pipeline: Any = None
    columns: tuple[str, ...] = ()

    def transform(self, x: Any) -> np.ndarray:
        # Overflow (a huge value next to small ones) gives inf, which the dataset refuses by
        # column in one line; numpy's warning would only add a second, vaguer one.
        with np.errstate(over="ignore", invalid="ignore"):
            if self.pipeline is None:
                return self.scaler.transform(np.asarray(x, dtype=np.float64))
            out = self.pipeline.transform(x[list(self.columns)])
            return np.asarray(out, dtype=np.float32)


def fit_preprocessor(table: Table, x: Any, spec: DataSpec) -> Preprocessor:
    if not table.is_frame:
        if table.pixel_scale is not None:  # pixels: scaled to [0, 1], as the Keras recipe does
            width = x.shape[1]
            return Preprocessor(Scaler(np.zeros(width), np.full(width, table.pixel_scale)))
        return Preprocessor(Scaler.fit(np.asarray(x, dtype=np.float64)))
    # scikit-learn for tables only: numeric arrays (the bundled sets, images) start without it.
    from sklearn.compose import ColumnTransformer

    transformers = []
    if table.numeric:
        transformers.append(("numeric", _numeric_steps(spec), list(table.numeric)))
    if table.categorical:
        transformers.append(("categorical", _categorical_steps(spec), list(table.categorical)))
    pipeline = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    with np.errstate(over="ignore", invalid="ignore"):  # see Preprocessor.transform
        pipeline.fit(x)
    width = int(pipeline.transform(x.iloc[:1]).shape[1])
    return Preprocessor(Scaler.identity(width), pipeline, table.numeric + table.categorical)


def _numeric_steps(spec: DataSpec) -> Pipeline:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    steps: list[tuple[str, Any]] = [("float", FunctionTransformer(as_float))]
    strategy = spec.missing
    if strategy == "interpolate":
        steps.append(("interpolate", FunctionTransformer(interpolate)))
        strategy = "mean"  # for a column with no value at all in the rows given
    if strategy in ("mean", "median", "most_frequent", "constant"):
        fill = spec.fill_value if isinstance(spec.fill_value, int | float) else 0.0
        steps.append(("impute", SimpleImputer(strategy=strategy, fill_value=fill,
                                              keep_empty_features=True)))
    steps.append(("scale", StandardScaler()))
    return Pipeline(steps)


def _categorical_steps(spec: DataSpec) -> Pipeline:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    steps: list[tuple[str, Any]] = [("text", FunctionTransformer(as_text))]
    if spec.missing == "constant":
        fill = spec.fill_value if isinstance(spec.fill_value, str) else "missing"
        steps.append(("impute", SimpleImputer(strategy="constant", fill_value=fill,
                                              keep_empty_features=True)))
    elif spec.missing in _IMPUTING:
        steps.append(("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)))
    steps.append(("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)))
    return Pipeline(steps)


def oversample(y: np.ndarray, n_classes: int, seed: int) -> np.ndarray:
    """Row indices that repeat rows of the smaller classes (drawn at random, with replacement)
    until every class has as many rows as the largest one."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(y, minlength=n_classes)
    extra = [rng.choice(np.flatnonzero(y == c), int(counts.max() - counts[c]), replace=True)
             for c in range(n_classes) if 0 < counts[c] < counts.max()]
    return np.concatenate([np.arange(len(y)), *extra]) if extra else np.arange(len(y))


def class_weights(spec: DataSpec, y: np.ndarray, classes: tuple[str, ...],
                  origin: str) -> tuple[float, ...] | None:
    """Per-class loss weights from `data.class_weight` and the training labels."""
    wanted = spec.class_weight
    if wanted is None:
        return None
    k = len(classes)
    if wanted == "balanced":
        # scikit-learn's "balanced" weights: rows / (classes present * rows of the class).
        present, counts = np.unique(y, return_counts=True)
        values = len(y) / (len(present) * counts.astype(np.float64))
        out = np.ones(k)
        out[present] = values
        return tuple(float(v) for v in out)
    pairs = [w for w in wanted if isinstance(w, tuple)]
    if not pairs:
        if len(wanted) != k:
            raise DataError(f"{origin}: data.class_weight lists {len(wanted)} weights for "
                            f"{k} classes ({_listing(list(classes))})")
        return tuple(float(w) for w in wanted if isinstance(w, float))
    by_name = dict(pairs)
    for key in by_name:
        if key not in classes:
            raise DataError(f"{origin}: data.class_weight names class {key!r}, which the target "
                            f"does not have; classes: {_listing(list(classes))}")
    return tuple(float(by_name.get(c, 1.0)) for c in classes)
