"""Shuffled train / test splits and k-fold cross-validation folds, row for row the ones
scikit-learn makes (`train_test_split`, `KFold`, `StratifiedKFold` with `shuffle=True` and an
integer seed), without importing scikit-learn: its import (with SciPy's statistics and pandas)
is most of a second at the start of every study, worker and `tuner train`, for a few lines of
NumPy. Same random draws in the same order, so a space's splits are those of earlier versions.
tests/test_splits.py compares both on many shapes, seeds and class balances.

Errors are `ValueError`s saying, in one line, what scikit-learn's would say.
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def split_off(n_samples: int, share: float, seed: int, stratify: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(kept, taken) positions of `n_samples` rows, `share` of them taken (rounded up), as
    `train_test_split(range(n), test_size=share, random_state=seed, stratify=stratify)`."""
    n_test = math.ceil(share * n_samples)
    n_train = n_samples - n_test
    if not 0.0 < share < 1.0:
        raise ValueError(f"test_size={share} should be a float in the (0, 1) range")
    if n_train == 0:
        raise ValueError(f"With n_samples={n_samples}, test_size={share} and train_size=None, "
                         "the resulting train set will be empty")
    rng = np.random.RandomState(seed)
    if stratify is None:
        permutation = rng.permutation(n_samples)
        return permutation[n_test:n_test + n_train], permutation[:n_test]
    classes, y_indices, class_counts = np.unique(stratify, return_inverse=True,
                                                 return_counts=True)
    if class_counts.min() < 2:
        raise ValueError("The least populated classes in y have only 1 member, which is too "
                         "few. The minimum number of groups for any class cannot be less than "
                         f"2. Classes with too few members are: {classes[class_counts < 2].tolist()}")
    for size, name in ((n_train, "train_size"), (n_test, "test_size")):
        if size < len(classes):
            raise ValueError(f"The {name} = {size} should be greater or equal to the number of "
                             f"classes = {len(classes)}")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        rows = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(rows[:n_i[i]])
        test.extend(rows[n_i[i]:n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def k_folds(n_samples: int, k: int, seed: int, stratify: np.ndarray | None = None
            ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) positions of each of `k` shuffled folds, as `KFold` (or, given class
    labels, `StratifiedKFold`) with `shuffle=True, random_state=seed`."""
    if k > n_samples:
        raise ValueError(f"Cannot have number of splits n_splits={k} greater than the number "
                         f"of samples: n_samples={n_samples}.")
    rng = np.random.RandomState(seed)
    if stratify is None:
        order = np.arange(n_samples)
        rng.shuffle(order)
        sizes = np.full(k, n_samples // k, dtype=int)
        sizes[:n_samples % k] += 1
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        test_folds = np.empty(n_samples, dtype=int)
        for fold in range(k):
            test_folds[order[bounds[fold]:bounds[fold + 1]]] = fold
    else:
        test_folds = _stratified_folds(np.asarray(stratify), k, rng)
    positions = np.arange(n_samples)
    return [(positions[test_folds != fold], positions[test_folds == fold]) for fold in range(k)]


def _stratified_folds(y: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """Each row's test fold: classes numbered by first appearance, dealt round robin over the
    sorted labels, each class's fold numbers shuffled."""
    _, first_seen, y_inv = np.unique(y, return_index=True, return_inverse=True)
    _, class_perm = np.unique(first_seen, return_inverse=True)
    y_encoded = class_perm[y_inv]
    n_classes = len(first_seen)
    counts = np.bincount(y_encoded)
    if np.all(k > counts):
        raise ValueError(f"n_splits={k} cannot be greater than the number of members in each "
                         "class.")
    if k > counts.min():
        warnings.warn(f"The least populated class in y has only {counts.min()} members, which "
                      f"is less than n_splits={k}.", UserWarning, stacklevel=3)
    y_order = np.sort(y_encoded)
    allocation = np.asarray([np.bincount(y_order[i::k], minlength=n_classes) for i in range(k)])
    test_folds = np.empty(len(y), dtype="i")
    for c in range(n_classes):
        folds_for_class = np.arange(k).repeat(allocation[:, c])
        rng.shuffle(folds_for_class)
        test_folds[y_encoded == c] = folds_for_class
    return test_folds


def _approximate_mode(class_counts: np.ndarray, n_draws: int,
                      rng: np.random.RandomState) -> np.ndarray:
    """How many rows of each class a stratified draw of `n_draws` takes: the floor of each
    class's share, then one more for the largest remainders, ties broken at random."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)
