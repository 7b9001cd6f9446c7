"""Loading a data set once per process and splitting it into train / validation / test tensors.

The split depends only on the space's data section, so every trial and every strategy sees the
same rows. Preprocessing (imputation, one-hot encoding, standardisation; a regression target's
standardisation) is fitted on the training rows only, and refitted per fold for cross-validation
and on train + validation for the final model; the test rows are never looked at while tuning.
Bad data raise a one-line `DataError` here, before any study or MLflow run exists.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from tuner.data._preprocess import Preprocessor, Scaler, Table, class_weights, clean, fit_preprocessor
from tuner.data._preprocess import oversample as oversample_rows
from tuner.data._sources import read_source, signature
from tuner.data._splits import k_folds, split_off
from tuner.errors import DataError
from tuner.space import DataSpec

__all__ = ["Dataset", "Scaler", "Split", "final_dataset", "load_dataset", "reshuffled_folds"]

_EXAMPLE_ROWS = 100  # training rows kept as read: input example (5) and signature types


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor  # int64 class ids, or float32 standardised targets

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Dataset:
    name: str
    task: str
    train: Split
    val: Split
    test: Split
    n_features: int
    n_outputs: int
    feature_scaler: Scaler
    target_scaler: Scaler | None  # regression only: metrics are reported in original units
    classes: tuple[str, ...] = ()
    preprocessor: Preprocessor | None = None  # raw rows -> model input, fitted on `train`
    class_weights: tuple[float, ...] | None = None
    report: Mapping[str, float] = field(default_factory=dict)  # rows, missing values, ...
    folds: tuple[Dataset, ...] = ()  # cross-validation: one Dataset per fold (no test split)
    example: Any = None  # the first training rows as read (for the logged model's example)
    test_rows: np.ndarray | None = None  # the test rows' positions in the file (or test part)

    def to_original_units(self, y: np.ndarray) -> np.ndarray:
        if self.target_scaler is None:
            return y
        return y * self.target_scaler.scale[0] + self.target_scaler.mean[0]

    @property
    def scores_raw_rows(self) -> bool:
        """The torch model alone scores raw rows (no scikit-learn pipeline in front of it)."""
        return self.preprocessor is None or self.preprocessor.pipeline is None


def load_dataset(spec: DataSpec) -> Dataset:
    """Load and split the data set described by `spec`; cached per process (one copy per worker)."""
    return _load_cached(spec, signature(spec))


def final_dataset(spec: DataSpec, holdout: bool) -> Dataset:
    """Train + validation as the training split (preprocessing refitted on them), the same test
    split. With `holdout`, a validation-sized slice of them is kept apart for early stopping."""
    table = _table(spec, signature(spec))
    rest, test = _test_rows(table, spec)
    val = np.array([], dtype=np.int64)
    if holdout:
        rest, val = _split(table, rest, spec.val_fraction, spec, "early-stopping")
    return _assemble(table, spec, rest, val, test)


def reshuffled_folds(spec: DataSpec, k: int, repeat: int) -> tuple[Dataset, ...]:
    """k cross-validation folds of train + validation (no test split), shuffled by
    (`spec.seed`, `repeat`): validation rows other than the study's, for re-evaluating the best
    configurations. Cached per process, like the data set."""
    return _reshuffled(spec, signature(spec), k, repeat)


@functools.lru_cache(maxsize=4)
def _reshuffled(spec: DataSpec, sig: tuple[Any, ...], k: int, repeat: int) -> tuple[Dataset, ...]:
    table = _table(spec, sig)
    rest, _ = _test_rows(table, spec)
    shuffle = int(np.random.SeedSequence([spec.seed, 1 + repeat]).generate_state(1)[0] % 2**31)
    shuffled = replace(spec, cv_folds=k, seed=shuffle)
    return tuple(_assemble(table, spec, train, val, None, with_test=False)
                 for train, val in _folds(table, rest, shuffled))


@functools.lru_cache(maxsize=2)
def _table(spec: DataSpec, sig: tuple[Any, ...]) -> Table:
    return clean(read_source(spec), spec)


@functools.lru_cache(maxsize=4)
def _load_cached(spec: DataSpec, sig: tuple[Any, ...]) -> Dataset:
    table = _table(spec, sig)
    rest, test = _test_rows(table, spec)
    folds: tuple[Dataset, ...] = ()
    if spec.cv_folds:
        folds = tuple(_assemble(table, spec, train, val, None, with_test=False)
                      for train, val in _folds(table, rest, spec))
    train, val = _split(table, rest, spec.val_fraction / (1.0 - _test_share(spec)), spec,
                        "validation")
    return _assemble(table, spec, train, val, test, folds)


def _test_share(spec: DataSpec) -> float:
    return 0.0 if spec.own_test else spec.test_fraction


def _test_rows(table: Table, spec: DataSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """(rows for train + validation, test rows); None: the file's own test part."""
    everything = np.arange(len(table.y))
    if spec.own_test:
        return everything, None
    return _split(table, everything, spec.test_fraction, spec, "test")


def _split(table: Table, rows: np.ndarray, share: float, spec: DataSpec,
           what: str) -> tuple[np.ndarray, np.ndarray]:
    stratify = table.y[rows] if spec.task == "classification" else None
    try:
        keep, taken = split_off(len(rows), share, spec.seed, stratify)
    except ValueError as exc:
        raise DataError(f"{table.origin}: cannot split {_rows(len(rows))}{_dropped(table)} into "
                        f"train and {what}: {_first_line(exc)}") from None
    # File order within a split: `interpolate` fills gaps from neighbouring rows.
    return np.sort(rows[keep]), np.sort(rows[taken])


def _folds(table: Table, rows: np.ndarray, spec: DataSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    k = spec.cv_folds
    stratify = table.y[rows] if spec.task == "classification" else None
    try:
        return [(rows[a], rows[b]) for a, b in k_folds(len(rows), k, spec.seed, stratify)]
    except ValueError as exc:
        raise DataError(f"{table.origin}: cannot make {k} cross-validation folds of "
                        f"{_rows(len(rows))}{_dropped(table)}: {_first_line(exc)}") from None


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def _dropped(table: Table) -> str:
    dropped = int(table.report.get("rows_dropped", 0))
    return f" (left after dropping {dropped} rows with missing values)" if dropped else ""


def _assemble(table: Table, spec: DataSpec, train: np.ndarray, val: np.ndarray,
              test: np.ndarray | None, folds: tuple[Dataset, ...] = (), *,
              with_test: bool = True) -> Dataset:
    """Fit the preprocessing on `train` and build the tensors; `test` None: the file's own
    test part (or none at all for a cross-validation fold, `with_test=False`)."""
    x_train, y_train = table.rows(train)
    x_val, y_val = table.rows(val)
    if not with_test:
        (x_test, y_test), test_rows = table.rows(np.array([], dtype=np.int64)), None
    elif test is None:
        assert table.test_x is not None and table.test_y is not None
        x_test, y_test, test_rows = table.test_x, table.test_y, np.arange(len(table.test_y))
    else:
        (x_test, y_test) = table.rows(test)
        test_rows = test if table.positions is None else table.positions[test]
    pre = fit_preprocessor(table, x_train, spec)
    first = torch.from_numpy(pre.transform(x_train))
    width = int(first.shape[1])
    xs = [first] + [torch.from_numpy(pre.transform(x)) if len(x) else torch.empty(0, width)
                    for x in (x_val, x_test)]
    report = dict(table.report)
    report.update(rows_train=float(len(y_train)), rows_val=float(len(y_val)),
                  rows_test=float(len(y_test)))
    target_scaler = None
    weights = None
    if spec.task == "classification":
        k = len(table.classes)
        if spec.oversample:
            order = oversample_rows(y_train, k, spec.seed)
            report["rows_oversampled"] = float(len(order) - len(y_train))
            xs[0], y_train = xs[0][torch.from_numpy(order)], y_train[order]
        weights = class_weights(spec, y_train, table.classes, table.origin)
        ys = [torch.as_tensor(v, dtype=torch.int64) for v in (y_train, y_val, y_test)]
    else:
        k = 1
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: see _check_finite
            target_scaler = Scaler.fit(y_train.reshape(-1, 1).astype(np.float64))
            ys = [torch.from_numpy(target_scaler.transform(v.reshape(-1, 1)).ravel())
                  for v in (y_train, y_val, y_test)]
    _check_finite(table, xs, ys)
    example = x_train.iloc[:_EXAMPLE_ROWS] if table.is_frame else x_train[:_EXAMPLE_ROWS]
    return Dataset(
        name=spec.source, task=spec.task,
        train=Split(xs[0], ys[0]), val=Split(xs[1], ys[1]), test=Split(xs[2], ys[2]),
        n_features=width, n_outputs=k, feature_scaler=pre.scaler, target_scaler=target_scaler,
        classes=table.classes, preprocessor=pre, class_weights=weights, report=report,
        folds=folds, example=example, test_rows=test_rows,
    )


def _check_finite(table: Table, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
    """Finite values can still overflow: 1e308 standardised with statistics of rows near 0 is
    infinite as a 32-bit float, and the MLP would train on it (NaN losses, every trial failed).
    Named by column: a table's numeric columns come first in the preprocessed matrix."""
    for x in xs:
        bad = (~torch.isfinite(x)).any(dim=0).nonzero().flatten().tolist()
        if bad:
            column = table.numeric[bad[0]] if table.is_frame and bad[0] < len(table.numeric) \
                else f"feature {bad[0]}"
            raise DataError(f"{table.origin}: column {column!r} has values too large to train on "
                            "once standardised (beyond 32-bit floats): rescale it, e.g. take its "
                            "logarithm")
    if any(not bool(torch.isfinite(y.float()).all()) for y in ys):
        raise DataError(f"{table.origin}: column {table.target!r} has values too large to train "
                        "on once standardised (beyond 32-bit floats): rescale it")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
