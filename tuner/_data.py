"""Loading a data set once per process and splitting it into train / validation / test tensors.

The split depends only on the space's data section, so every trial and every strategy sees the
same rows. Features (and a regression target) are standardised with training statistics only;
the test rows are never looked at while tuning.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from sklearn import datasets
from sklearn.model_selection import train_test_split

from tuner._errors import DataError
from tuner._spec import DataSpec

_LOADERS = {
    "digits": datasets.load_digits,
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "diabetes": datasets.load_diabetes,
}


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

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32)


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

    def to_original_units(self, y: np.ndarray) -> np.ndarray:
        if self.target_scaler is None:
            return y
        return y * self.target_scaler.scale[0] + self.target_scaler.mean[0]


def load_dataset(spec: DataSpec) -> Dataset:
    """Load and split the data set described by `spec`; cached per process (one copy per worker)."""
    return _load_cached(spec)


@functools.lru_cache(maxsize=4)
def _load_cached(spec: DataSpec) -> Dataset:
    loader = _LOADERS.get(spec.source)
    if loader is None:
        raise DataError(f"data.source: unknown data set {spec.source!r}")
    bunch = loader()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target)
    classification = spec.task == "classification"
    stratify = y if classification else None
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=spec.test_fraction, random_state=spec.seed, stratify=stratify)
    val_share = spec.val_fraction / (1.0 - spec.test_fraction)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_share, random_state=spec.seed,
        stratify=y_rest if classification else None)
    scaler = Scaler.fit(x_train)
    target_scaler = None
    if classification:
        classes = tuple(str(c) for c in getattr(bunch, "target_names", np.unique(y)))
        n_outputs = len(np.unique(y))
        ys = [torch.as_tensor(v, dtype=torch.int64) for v in (y_train, y_val, y_test)]
    else:
        classes = ()
        n_outputs = 1
        target_scaler = Scaler.fit(y_train.reshape(-1, 1).astype(np.float64))
        ys = [torch.from_numpy(target_scaler.transform(v.reshape(-1, 1)).ravel())
              for v in (y_train, y_val, y_test)]
    xs = [torch.from_numpy(scaler.transform(v)) for v in (x_train, x_val, x_test)]
    return Dataset(
        name=spec.source,
        task=spec.task,
        train=Split(xs[0], ys[0]),
        val=Split(xs[1], ys[1]),
        test=Split(xs[2], ys[2]),
        n_features=x.shape[1],
        n_outputs=n_outputs,
        feature_scaler=scaler,
        target_scaler=target_scaler,
        classes=classes,
    )
